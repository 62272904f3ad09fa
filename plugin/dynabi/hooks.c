//go:build dynmod

// The dynamic-module hooks that need no Go. Envoy calls every HTTP filter
// hook of a module on every stream; a hook exported from Go costs a C→Go
// crossing (a goroutine switch onto the thread's Go stack) even when it does
// nothing, so only the request-headers decision and the per-config hooks
// enter Go. A stream's module pointer is its config's: a stream keeps no
// state of its own in the module.

#include <stddef.h>

#include "abi.h"
#include "_cgo_export.h"

#define BUF(s) ((envoy_dynamic_module_type_module_buffer){(s), sizeof(s) - 1})

envoy_dynamic_module_type_abi_version_module_ptr envoy_dynamic_module_on_program_init(void) {
  return envoy_dynamic_modules_abi_version;
}

envoy_dynamic_module_type_http_filter_module_ptr envoy_dynamic_module_on_http_filter_new(
    envoy_dynamic_module_type_http_filter_config_module_ptr config,
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy) {
  return config;
}

void envoy_dynamic_module_on_http_filter_destroy(
    envoy_dynamic_module_type_http_filter_module_ptr filter) {}

// The authority is read here, in C, and handed to Go with the call: one
// crossing per request instead of two.
envoy_dynamic_module_type_on_http_filter_request_headers_status
envoy_dynamic_module_on_http_filter_request_headers(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr config, bool end_of_stream) {
  envoy_dynamic_module_type_envoy_buffer authority = {0, 0};
  if (!envoy_dynamic_module_callback_http_get_header(
          f, envoy_dynamic_module_type_http_header_type_RequestHeader, BUF(":authority"),
          &authority, 0, NULL)) {
    authority.ptr = NULL;
    authority.length = 0;
  }
  return meshextRequestHeaders(f, (void*)config, (char*)authority.ptr, authority.length,
                               end_of_stream);
}

// meshext_allow is the allow path's three calls into Envoy in one Go→C call.
void meshext_allow(envoy_dynamic_module_type_http_filter_envoy_ptr f, size_t counter,
                   bool count, const char* header, size_t header_len, const char* cluster,
                   size_t cluster_len) {
  if (count) {
    envoy_dynamic_module_callback_http_filter_increment_counter(f, counter, NULL, 0, 1);
  }
  if (header != NULL) {
    envoy_dynamic_module_type_module_buffer k = {header, header_len};
    envoy_dynamic_module_type_module_buffer v = {cluster, cluster_len};
    envoy_dynamic_module_callback_http_set_header(
        f, envoy_dynamic_module_type_http_header_type_RequestHeader, k, v);
    envoy_dynamic_module_callback_http_clear_route_cache(f);
  }
}

// Per-route configuration is not supported: NULL makes Envoy reject it.
envoy_dynamic_module_type_http_filter_per_route_config_module_ptr
envoy_dynamic_module_on_http_filter_per_route_config_new(
    envoy_dynamic_module_type_envoy_buffer name, envoy_dynamic_module_type_envoy_buffer config) {
  return NULL;
}

void envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    envoy_dynamic_module_type_http_filter_per_route_config_module_ptr config) {}

// Every other hook: nothing to do, and no Go.

envoy_dynamic_module_type_on_http_filter_request_body_status
envoy_dynamic_module_on_http_filter_request_body(envoy_dynamic_module_type_http_filter_envoy_ptr f,
                                                 envoy_dynamic_module_type_http_filter_module_ptr m,
                                                 bool end_of_stream) {
  return envoy_dynamic_module_type_on_http_filter_request_body_status_Continue;
}

envoy_dynamic_module_type_on_http_filter_request_trailers_status
envoy_dynamic_module_on_http_filter_request_trailers(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m) {
  return envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue;
}

envoy_dynamic_module_type_on_http_filter_response_headers_status
envoy_dynamic_module_on_http_filter_response_headers(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, bool end_of_stream) {
  return envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue;
}

envoy_dynamic_module_type_on_http_filter_response_body_status
envoy_dynamic_module_on_http_filter_response_body(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, bool end_of_stream) {
  return envoy_dynamic_module_type_on_http_filter_response_body_status_Continue;
}

envoy_dynamic_module_type_on_http_filter_response_trailers_status
envoy_dynamic_module_on_http_filter_response_trailers(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m) {
  return envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue;
}

void envoy_dynamic_module_on_http_filter_stream_complete(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m) {}

envoy_dynamic_module_type_on_http_filter_local_reply_status
envoy_dynamic_module_on_http_filter_local_reply(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint32_t response_code,
    envoy_dynamic_module_type_envoy_buffer details, bool reset_imminent) {
  return envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue;
}

void envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint64_t callout_id,
    envoy_dynamic_module_type_http_callout_result result,
    envoy_dynamic_module_type_envoy_http_header* headers, size_t headers_size,
    envoy_dynamic_module_type_envoy_buffer* body_chunks, size_t body_chunks_size) {}

void envoy_dynamic_module_on_http_filter_http_stream_headers(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint64_t stream_id,
    envoy_dynamic_module_type_envoy_http_header* headers, size_t headers_size, bool end_stream) {}

void envoy_dynamic_module_on_http_filter_http_stream_data(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint64_t stream_id,
    const envoy_dynamic_module_type_envoy_buffer* data, size_t data_count, bool end_stream) {}

void envoy_dynamic_module_on_http_filter_http_stream_trailers(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint64_t stream_id,
    envoy_dynamic_module_type_envoy_http_header* trailers, size_t trailers_size) {}

void envoy_dynamic_module_on_http_filter_http_stream_complete(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint64_t stream_id) {}

void envoy_dynamic_module_on_http_filter_http_stream_reset(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint64_t stream_id,
    envoy_dynamic_module_type_http_stream_reset_reason reason) {}

void envoy_dynamic_module_on_http_filter_scheduled(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m, uint64_t event_id) {}

void envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m) {}

void envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr m) {}
