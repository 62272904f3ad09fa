// A reference for the filter benchmark: an Envoy dynamic module in plain C
// that makes, on every request, the calls into Envoy the meshext filter
// makes on the benchmark's allow path (forward-proxy listener):
//   read :authority, count the request, set the decision metadata
//   (action, mes, policy), set the cluster header, clear the route cache.
// It has no runtime, no allocations and a constant decision (every request
// is allowed by the mesh default), so what it costs is Envoy's own price
// for that behaviour: the floor for any filter with meshext's contract.
// Built by envoytest.BuildCReference for benchmarks; never shipped.
// -DMESHEXT_REF_LEAN leaves out the metadata (denyMetadataOnly).

#include "abi.h"

#define BUF(s) ((envoy_dynamic_module_type_module_buffer){(s), sizeof(s) - 1})

// One config per listener in the benchmark; the module pointer only has to
// be non-NULL, so the counter id doubles as it.
static size_t allowed_counter;

envoy_dynamic_module_type_abi_version_module_ptr envoy_dynamic_module_on_program_init(void) {
  return envoy_dynamic_modules_abi_version;
}

envoy_dynamic_module_type_http_filter_config_module_ptr
envoy_dynamic_module_on_http_filter_config_new(
    envoy_dynamic_module_type_http_filter_config_envoy_ptr config_envoy,
    envoy_dynamic_module_type_envoy_buffer name, envoy_dynamic_module_type_envoy_buffer config) {
  envoy_dynamic_module_callback_http_filter_config_define_counter(
      config_envoy, BUF("meshext_allowed"), NULL, 0, &allowed_counter);
  return &allowed_counter;
}

void envoy_dynamic_module_on_http_filter_config_destroy(
    envoy_dynamic_module_type_http_filter_config_module_ptr config) {}

envoy_dynamic_module_type_http_filter_module_ptr envoy_dynamic_module_on_http_filter_new(
    envoy_dynamic_module_type_http_filter_config_module_ptr config,
    envoy_dynamic_module_type_http_filter_envoy_ptr filter_envoy) {
  return config;
}

void envoy_dynamic_module_on_http_filter_destroy(
    envoy_dynamic_module_type_http_filter_module_ptr filter) {}

envoy_dynamic_module_type_on_http_filter_request_headers_status
envoy_dynamic_module_on_http_filter_request_headers(
    envoy_dynamic_module_type_http_filter_envoy_ptr f,
    envoy_dynamic_module_type_http_filter_module_ptr filter, bool end_of_stream) {
  envoy_dynamic_module_type_envoy_buffer authority = {0, 0};
  envoy_dynamic_module_callback_http_get_header(
      f, envoy_dynamic_module_type_http_header_type_RequestHeader, BUF(":authority"), &authority,
      0, NULL);
  envoy_dynamic_module_callback_http_filter_increment_counter(f, allowed_counter, NULL, 0, 1);
#ifndef MESHEXT_REF_LEAN
  // The MES name: the generated hostname's first label (svc-N.extsvc...).
  envoy_dynamic_module_type_module_buffer mes = {(const char*)authority.ptr, 0};
  while (mes.length < authority.length && mes.ptr[mes.length] != '.') {
    mes.length++;
  }
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(f, BUF("meshext"), BUF("action"),
                                                                 BUF("Allow"));
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(f, BUF("meshext"), BUF("mes"),
                                                                 mes);
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(f, BUF("meshext"), BUF("policy"),
                                                                 BUF("mesh-default"));
#endif
  envoy_dynamic_module_callback_http_set_header(
      f, envoy_dynamic_module_type_http_header_type_RequestHeader, BUF("x-meshext-cluster"),
      BUF("mes_http"));
  envoy_dynamic_module_callback_http_clear_route_cache(f);
  return envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue;
}

// Every other hook the ABI requires: nothing to do.

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
