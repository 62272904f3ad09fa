//go:build dynmod

// Package dynabi binds meshext's dynamic-module filters (plugin/dynmod) to
// stock Envoy's dynamic-module ABI with as little Go per request as the
// filter's work allows. It replaces the SDK's abi package, which enters Go
// for every hook of every stream (a stream object, a locked registry, six
// crossings for a GET): here the hooks that do nothing are C (hooks.c), a
// stream has no Go state, and a request enters Go once, with its authority
// already read. An allowed request then makes one call back into C for
// the counter, the cluster header and the route refresh together. Anything
// else (denials, unknown hosts, shadow denials, client certificates) runs
// the dynmod filter on SDK-shaped handles implemented here.
//
// Building needs the SDK's abi.h on the C include path:
// CGO_CFLAGS=-I$(go list -m -f '{{.Dir}}' github.com/envoyproxy/envoy/source/extensions/dynamic_modules)/abi
// (make plugin and envoytest.BuildModule set it).
package dynabi

/*
#cgo linux LDFLAGS: -Wl,--unresolved-symbols=ignore-all
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include "abi.h"

void meshext_allow(envoy_dynamic_module_type_http_filter_envoy_ptr f, size_t counter,
                   bool count, const char* header, size_t header_len, const char* cluster,
                   size_t cluster_len);
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/envoyproxy/envoy/source/extensions/dynamic_modules/sdk/go/shared"

	"github.com/meshext/meshext/plugin/cthread"
	"github.com/meshext/meshext/plugin/dynmod"
)

// factories are the registered filter config factories by filter name.
var factories = map[string]shared.HttpFilterConfigFactory{}

// Register makes the factories available under their filter names. Call
// it from the shared library's init.
func Register(m map[string]shared.HttpFilterConfigFactory) {
	for k, v := range m {
		factories[k] = v
	}
}

// config is one filter config in Envoy. Its address is the module pointer
// Envoy hands back on every request; live keeps it reachable for the GC
// (which does not move heap objects) until Envoy destroys the config.
type config struct {
	factory shared.HttpFilterFactory
	fast    dynmod.FastDecider // nil: every request runs the filter
}

var live = struct {
	sync.Mutex
	m map[*config]struct{}
}{m: map[*config]struct{}{}}

//export envoy_dynamic_module_on_http_filter_config_new
func envoy_dynamic_module_on_http_filter_config_new(
	envoyConfig C.envoy_dynamic_module_type_http_filter_config_envoy_ptr,
	name C.envoy_dynamic_module_type_envoy_buffer,
	raw C.envoy_dynamic_module_type_envoy_buffer,
) (ptr C.envoy_dynamic_module_type_http_filter_config_module_ptr) {
	h := &configHandle{envoy: envoyConfig}
	defer func() {
		if p := recover(); p != nil {
			h.Log(shared.LogLevelError, "meshext: panic creating filter config: %v", p)
			ptr = nil
		}
	}()
	n := bufString(name)
	cf := factories[n]
	if cf == nil {
		h.Log(shared.LogLevelError, "meshext: no filter named %q in this module", n)
		return nil
	}
	// The config bytes are Envoy's; the factory keeps what it parses.
	f, err := cf.Create(h, unsafe.Slice((*byte)(unsafe.Pointer(raw.ptr)), int(raw.length)))
	if err != nil || f == nil {
		h.Log(shared.LogLevelWarn, "meshext: filter config rejected: %v", err)
		return nil
	}
	c := &config{factory: f}
	c.fast, _ = f.(dynmod.FastDecider)
	live.Lock()
	live.m[c] = struct{}{}
	live.Unlock()
	return C.envoy_dynamic_module_type_http_filter_config_module_ptr(unsafe.Pointer(c))
}

//export envoy_dynamic_module_on_http_filter_config_destroy
func envoy_dynamic_module_on_http_filter_config_destroy(ptr C.envoy_dynamic_module_type_http_filter_config_module_ptr) {
	c := (*config)(unsafe.Pointer(ptr))
	live.Lock()
	delete(live.m, c)
	live.Unlock()
	func() {
		defer func() { _ = recover() }()
		c.factory.OnDestroy()
	}()
}

//export meshextRequestHeaders
func meshextRequestHeaders(f C.envoy_dynamic_module_type_http_filter_envoy_ptr, ptr unsafe.Pointer,
	authPtr *C.char, authLen C.size_t, endOfStream C.bool,
) (st C.envoy_dynamic_module_type_on_http_filter_request_headers_status) {
	cthread.Tick() // see plugin/cthread: Envoy's workers are C threads
	c := (*config)(ptr)
	authority := ""
	if authPtr != nil {
		authority = unsafe.String((*byte)(unsafe.Pointer(authPtr)), int(authLen))
	}
	if c.fast != nil {
		if a, ok := fastAllow(c.fast, authority); ok {
			if a.Count || a.Header != "" {
				allow(f, &a)
			}
			return C.envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue
		}
	}
	s := &stream{envoy: f, authority: authority}
	s.request = headerMap{s: s, kind: C.envoy_dynamic_module_type_http_header_type_RequestHeader}
	return C.envoy_dynamic_module_type_on_http_filter_request_headers_status(
		c.factory.Create(s).OnRequestHeaders(&s.request, bool(endOfStream)))
}

// fastAllow is FastAllow with a panic taken as "not decided here": the
// filter then decides the request, with its own panic barrier.
func fastAllow(d dynmod.FastDecider, authority string) (a dynmod.Allow, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			a, ok = dynmod.Allow{}, false
		}
	}()
	return d.FastAllow(authority)
}

func allow(f C.envoy_dynamic_module_type_http_filter_envoy_ptr, a *dynmod.Allow) {
	var hp, cp *C.char
	if a.Header != "" {
		hp = (*C.char)(unsafe.Pointer(unsafe.StringData(a.Header)))
		cp = (*C.char)(unsafe.Pointer(unsafe.StringData(a.Cluster)))
	}
	C.meshext_allow(f, C.size_t(a.Counter), C.bool(a.Count), hp, C.size_t(len(a.Header)), cp, C.size_t(len(a.Cluster)))
	runtime.KeepAlive(a)
}

func bufString(b C.envoy_dynamic_module_type_envoy_buffer) string {
	if b.ptr == nil {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Pointer(b.ptr)), int(b.length))
}

func modBuf(s string) C.envoy_dynamic_module_type_module_buffer {
	return C.envoy_dynamic_module_type_module_buffer{ptr: (*C.char)(unsafe.Pointer(unsafe.StringData(s))), length: C.size_t(len(s))}
}

func hostLog(level shared.LogLevel, format string, args []any) {
	if !bool(C.envoy_dynamic_module_callback_log_enabled(C.envoy_dynamic_module_type_log_level(level))) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	C.envoy_dynamic_module_callback_log(C.envoy_dynamic_module_type_log_level(level), modBuf(msg))
	runtime.KeepAlive(msg)
}

// configHandle is the part of shared.HttpFilterConfigHandle dynmod uses;
// anything else panics (nil embedded interface) and the config is rejected.
type configHandle struct {
	shared.HttpFilterConfigHandle
	envoy C.envoy_dynamic_module_type_http_filter_config_envoy_ptr
}

func (h *configHandle) Log(level shared.LogLevel, format string, args ...any) {
	hostLog(level, format, args)
}

func (h *configHandle) DefineCounter(name string, tagKeys ...string) (shared.MetricID, shared.MetricsResult) {
	if len(tagKeys) > 0 {
		return 0, shared.MetricsInvalidTags
	}
	var id C.size_t
	res := C.envoy_dynamic_module_callback_http_filter_config_define_counter(h.envoy, modBuf(name), nil, 0, &id)
	runtime.KeepAlive(name)
	return shared.MetricID(id), shared.MetricsResult(res)
}

// stream is the part of shared.HttpFilterHandle the dynmod filter uses, for
// the requests FastAllow leaves to it; anything else panics (nil embedded
// interface) into the filter's panic barrier (500).
type stream struct {
	shared.HttpFilterHandle
	envoy     C.envoy_dynamic_module_type_http_filter_envoy_ptr
	authority string
	request   headerMap
}

func (s *stream) Log(level shared.LogLevel, format string, args ...any) {
	hostLog(level, format, args)
}

func (s *stream) IncrementCounterValue(id shared.MetricID, value uint64, tags ...string) shared.MetricsResult {
	if len(tags) > 0 {
		return shared.MetricsInvalidTags
	}
	return shared.MetricsResult(C.envoy_dynamic_module_callback_http_filter_increment_counter(s.envoy, C.size_t(id), nil, 0, C.uint64_t(value)))
}

func (s *stream) SetMetadata(ns, key string, value any) {
	v, ok := value.(string)
	if !ok {
		panic(fmt.Sprintf("meshext: metadata %s.%s: only strings are bound, not %T", ns, key, value))
	}
	C.envoy_dynamic_module_callback_http_set_dynamic_metadata_string(s.envoy, modBuf(ns), modBuf(key), modBuf(v))
	runtime.KeepAlive(ns)
	runtime.KeepAlive(key)
	runtime.KeepAlive(v)
}

func (s *stream) ClearRouteCache() { C.envoy_dynamic_module_callback_http_clear_route_cache(s.envoy) }

func (s *stream) GetAttributeBool(id shared.AttributeID) (bool, bool) {
	var v C.bool
	ok := C.envoy_dynamic_module_callback_http_filter_get_attribute_bool(s.envoy, C.envoy_dynamic_module_type_attribute_id(id), &v)
	return bool(v), bool(ok)
}

func (s *stream) GetAttributeString(id shared.AttributeID) (shared.UnsafeEnvoyBuffer, bool) {
	var v C.envoy_dynamic_module_type_envoy_buffer
	ok := C.envoy_dynamic_module_callback_http_filter_get_attribute_string(s.envoy, C.envoy_dynamic_module_type_attribute_id(id), &v)
	if !bool(ok) || v.ptr == nil || v.length == 0 {
		return shared.UnsafeEnvoyBuffer{}, false
	}
	return shared.UnsafeEnvoyBuffer{Ptr: (*byte)(unsafe.Pointer(v.ptr)), Len: uint64(v.length)}, true
}

func headerViews(headers [][2]string) []C.envoy_dynamic_module_type_module_http_header {
	views := make([]C.envoy_dynamic_module_type_module_http_header, len(headers))
	for i, h := range headers {
		views[i] = C.envoy_dynamic_module_type_module_http_header{
			key_ptr: (*C.char)(unsafe.Pointer(unsafe.StringData(h[0]))), key_length: C.size_t(len(h[0])),
			value_ptr: (*C.char)(unsafe.Pointer(unsafe.StringData(h[1]))), value_length: C.size_t(len(h[1])),
		}
	}
	return views
}

func (s *stream) SendLocalResponse(status uint32, headers [][2]string, body []byte, detail string) {
	views := headerViews(headers)
	b := C.envoy_dynamic_module_type_module_buffer{ptr: (*C.char)(unsafe.Pointer(unsafe.SliceData(body))), length: C.size_t(len(body))}
	C.envoy_dynamic_module_callback_http_send_response(s.envoy, C.uint32_t(status), unsafe.SliceData(views), C.size_t(len(views)), b, modBuf(detail))
	runtime.KeepAlive(headers)
	runtime.KeepAlive(views)
	runtime.KeepAlive(body)
	runtime.KeepAlive(detail)
}

func (s *stream) SendResponseHeaders(headers [][2]string, endOfStream bool) {
	views := headerViews(headers)
	C.envoy_dynamic_module_callback_http_send_response_headers(s.envoy, unsafe.SliceData(views), C.size_t(len(views)), C.bool(endOfStream))
	runtime.KeepAlive(headers)
	runtime.KeepAlive(views)
}

// headerMap is the part of shared.HeaderMap dynmod uses. The request's
// authority was read in C before the call.
type headerMap struct {
	shared.HeaderMap
	s    *stream
	kind C.envoy_dynamic_module_type_http_header_type
}

func (m *headerMap) GetOne(key string) shared.UnsafeEnvoyBuffer {
	if key == ":authority" && m.kind == C.envoy_dynamic_module_type_http_header_type_RequestHeader {
		return shared.UnsafeEnvoyBuffer{Ptr: unsafe.StringData(m.s.authority), Len: uint64(len(m.s.authority))}
	}
	var v C.envoy_dynamic_module_type_envoy_buffer
	ok := C.envoy_dynamic_module_callback_http_get_header(m.s.envoy, m.kind, modBuf(key), &v, 0, nil)
	runtime.KeepAlive(key)
	if !bool(ok) || v.ptr == nil || v.length == 0 {
		return shared.UnsafeEnvoyBuffer{}
	}
	return shared.UnsafeEnvoyBuffer{Ptr: (*byte)(unsafe.Pointer(v.ptr)), Len: uint64(v.length)}
}

func (m *headerMap) Set(key, value string) {
	C.envoy_dynamic_module_callback_http_set_header(m.s.envoy, m.kind, modBuf(key), modBuf(value))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
}
