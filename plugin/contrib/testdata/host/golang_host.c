// golang_host plays Envoy 1.39's contrib Go HTTP filter
// (envoy.filters.http.golang, contrib/golang/filters/http/source in the
// pinned github.com/envoyproxy/envoy module) for one Go shared library, so a
// test can drive libmeshext-golang.so through its real C ABI without a
// contrib Envoy binary. Test-only; never shipped.
//
// It is built against that module's own headers: api.h (the structs and the
// callbacks Envoy provides to Go) and common/dso/libgolang.h (the entry points
// Go exports). It dlopens the library with RTLD_NOW, so every callback the
// library imports must be defined here; those the meshext filter has no
// business calling abort the run with their name.
//
// What it does mirrors golang_filter.cc, processor_state.{h,cc} and cgo.cc:
// a filter config is Config.plugin_config serialized as a google.protobuf.Any
// and handed to envoyGoFilterNewHttpPluginConfig (id 0 = Envoy rejects the
// config); a route config is parsed with is_route_config=1 and merged with
// envoyGoFilterMergeHttpPluginConfig; a request runs decodeHeaders (state
// ProcessingHeader, end_stream), the router, encodeHeaders/encodeData of the
// response, onStreamComplete, the access log and onDestroy. Callbacks that
// Envoy posts to the worker's dispatcher (sendLocalReply, continue) run after
// the Go call returns. A local reply to a gRPC request is sent as Envoy's
// Utility::sendLocalReply does: HTTP 200, trailers-only, grpc-status and
// grpc-message.
//
// Input (stdin), one command per line:
//   config NAME HEX          filter-level plugin_config (serialized Any, hex)
//   routeconfig NAME HEX     per-route plugin_config
//   merge NAME PARENT CHILD  the merged config Envoy makes for a route
//   request LABEL CONFIG     starts a request; then
//     h NAME VALUE           a request header (VALUE is the rest of the line)
//     body TEXT              a request body (the headers do not end the stream)
//     peer URI_SAN           the downstream connection is mTLS with this validated URI SAN
//     fault getheader        envoyGoFilterHttpGetHeader answers CAPIInvalidPhase
//     send                   runs the request
// Output (stdout): what the library did, and one "DECISION LABEL: ..." line
// per request.

#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "libgolang.h" // includes api.h

// ---- output -----------------------------------------------------------

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void say(const char* fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&out_mu);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
}

static void die(const char* fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&out_mu);
  fputs("golang_host: FATAL: ", stdout);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fputc('\n', stdout);
  fflush(stdout);
  _exit(3);
}

static char* dupn(const char* p, size_t n) {
  char* s = malloc(n + 1);
  if (s == NULL) {
    die("out of memory");
  }
  memcpy(s, p, n);
  s[n] = 0;
  return s;
}

// ---- header maps (Envoy's keys are lower case) ----------------------------

#define MAX_HEADERS 64

typedef struct {
  char* key;
  char* value;
} header;

typedef struct {
  header h[MAX_HEADERS];
  int n;
} headerMap;

static void map_add(headerMap* m, const char* k, size_t kl, const char* v, size_t vl) {
  if (m->n == MAX_HEADERS) {
    die("too many headers");
  }
  char* key = dupn(k, kl);
  for (char* p = key; *p; p++) {
    *p = (char)tolower((unsigned char)*p);
  }
  m->h[m->n].key = key;
  m->h[m->n].value = dupn(v, vl);
  m->n++;
}

static header* map_find(headerMap* m, const char* k, size_t kl) {
  for (int i = 0; i < m->n; i++) {
    if (strlen(m->h[i].key) == kl && strncasecmp(m->h[i].key, k, kl) == 0) {
      return &m->h[i];
    }
  }
  return NULL;
}

static void map_set(headerMap* m, const char* k, size_t kl, const char* v, size_t vl) {
  header* e = map_find(m, k, kl);
  if (e == NULL) {
    map_add(m, k, kl, v, vl);
    return;
  }
  free(e->value);
  e->value = dupn(v, vl);
}

static void map_remove(headerMap* m, const char* k) {
  header* e = map_find(m, k, strlen(k));
  if (e == NULL) {
    return;
  }
  free(e->key);
  free(e->value);
  *e = m->h[--m->n];
}

static const char* map_get(headerMap* m, const char* k) {
  header* e = map_find(m, k, strlen(k));
  return e ? e->value : NULL;
}

// HeaderMap::byteSize: the sum of key and value lengths.
static uint64_t map_bytes(headerMap* m) {
  uint64_t n = 0;
  for (int i = 0; i < m->n; i++) {
    n += strlen(m->h[i].key) + strlen(m->h[i].value);
  }
  return n;
}

// ---- Envoy's FilterState values (processor_state.h) -------------------------

enum {
  WaitingHeader = 0,
  ProcessingHeader = 1,
  WaitingData = 2,
  WaitingAllData = 3,
  ProcessingData = 4,
  WaitingTrailer = 5,
  ProcessingTrailer = 6,
  Done = 7,
};

// GolangStatus (processor_state.h) = api.StatusType.
static const char* status_name(uint64_t s) {
  static const char* names[] = {"Running", "LocalReply", "Continue", "StopAndBuffer", "StopAndBufferWatermark", "StopNoBuffer"};
  return s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static int processing(int state) {
  return state == ProcessingHeader || state == ProcessingData || state == ProcessingTrailer;
}

// ---- configs ---------------------------------------------------------------

#define MAX_METRICS 16
#define MAX_CONFIGS 16

typedef struct {
  httpConfig c; // first: Go holds a httpConfig*
  char* name;
  char* plugin_config; // the serialized Any; Envoy keeps it alive too
  uint64_t id;
  char* metric[MAX_METRICS];
  int64_t value[MAX_METRICS];
  int metrics;
} hostConfig;

static hostConfig* configs[MAX_CONFIGS];
static int nconfigs;
static const char plugin_name[] = "meshext";

static hostConfig* config_by_name(const char* name) {
  for (int i = 0; i < nconfigs; i++) {
    if (strcmp(configs[i]->name, name) == 0) {
      return configs[i];
    }
  }
  die("no config %s", name);
  return NULL;
}

// ---- requests --------------------------------------------------------------

typedef struct {
  httpRequest req; // first: Go holds a httpRequest*, processState.req points here
  processState decoding;
  processState encoding;
  headerMap request_headers;
  headerMap response_headers;
  headerMap* decoding_headers; // state.headers: set while Envoy hands them to Go
  headerMap* encoding_headers;
  const char* label;
  const char* peer_uri_san; // validated client certificate URI SAN, or NULL
  const char* request_body; // NULL: the headers end the request
  int fault_getheader;
  int route_cache_cleared;
  // A sendLocalReply posted to the dispatcher.
  int reply_pending;
  int reply_code;
  char* reply_body;
  long long reply_grpc_status;
  char* reply_details;
  headerMap reply_headers;
  char* str_value; // req_->strValue: a string handed to Go by pointer
} hostRequest;

static hostRequest* request_of_state(void* s) {
  processState* ps = (processState*)s;
  return (hostRequest*)ps->req;
}

static headerMap* headers_of_state(void* s) {
  processState* ps = (processState*)s;
  hostRequest* r = request_of_state(s);
  return ps->is_encoding ? r->encoding_headers : r->decoding_headers;
}

// Filter::isProcessingInGo, for the callbacks that take the request.
static int request_in_go(hostRequest* r) {
  return processing(r->decoding.state) || processing(r->encoding.state) || atomic_load(&r->req.is_golang_processing_log);
}

// ---- callbacks Envoy provides (api.h), those the filter uses ------------------

// The checks Envoy's header callbacks make: Go is processing this state
// (envoyGoFilterProcessStateHandlerWrapper) and the state has headers.
static CAPIStatus state_headers(void* s, headerMap** m) {
  if (!processing(((processState*)s)->state)) {
    return CAPINotInGo;
  }
  *m = headers_of_state(s);
  return *m == NULL ? CAPIInvalidPhase : CAPIOK;
}

CAPIStatus envoyGoFilterHttpGetHeader(void* s, void* key_data, int key_len, uint64_t* value_data, int* value_len) {
  hostRequest* r = request_of_state(s);
  headerMap* m;
  CAPIStatus st = state_headers(s, &m);
  if (st != CAPIOK) {
    return st;
  }
  if (r->fault_getheader) {
    say("%s: envoyGoFilterHttpGetHeader(%.*s) -> CAPIInvalidPhase (injected fault)", r->label, key_len, (char*)key_data);
    return CAPIInvalidPhase;
  }
  header* e = map_find(m, key_data, (size_t)key_len);
  if (e != NULL) {
    *value_data = (uint64_t)(uintptr_t)e->value;
    *value_len = (int)strlen(e->value);
  }
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpSetHeaderHelper(void* s, void* key_data, int key_len, void* value_data, int value_len,
                                            headerAction action) {
  hostRequest* r = request_of_state(s);
  headerMap* m;
  CAPIStatus st = state_headers(s, &m);
  if (st != CAPIOK) {
    return st;
  }
  say("%s: set header %.*s: %.*s (%s)", r->label, key_len, (char*)key_data, value_len, (char*)value_data,
      action == HeaderAdd ? "add" : "set");
  if (action == HeaderAdd) {
    map_add(m, key_data, (size_t)key_len, value_data, (size_t)value_len);
  } else {
    map_set(m, key_data, (size_t)key_len, value_data, (size_t)value_len);
  }
  return CAPIOK;
}

// copyHeaderMapToGo: Go sized strs (2 per header) and buf (byteSize) from
// the counts it got with the headers; the SDK's HeaderMap.Set copies them
// all before it sets one.
CAPIStatus envoyGoFilterHttpCopyHeaders(void* s, void* strs, void* buf) {
  hostRequest* r = request_of_state(s);
  headerMap* m;
  CAPIStatus st = state_headers(s, &m);
  if (st != CAPIOK) {
    return st;
  }
  GoString* go_strs = strs;
  char* go_buf = buf;
  for (int i = 0; i < m->n; i++) {
    size_t kl = strlen(m->h[i].key), vl = strlen(m->h[i].value);
    go_strs[2 * i].p = go_buf;
    go_strs[2 * i].n = (ptrdiff_t)kl;
    memcpy(go_buf, m->h[i].key, kl);
    go_buf += kl;
    go_strs[2 * i + 1].n = (ptrdiff_t)vl;
    if (vl > 0) {
      go_strs[2 * i + 1].p = go_buf;
      memcpy(go_buf, m->h[i].value, vl);
      go_buf += vl;
    }
  }
  say("%s: copied %d headers into Go", r->label, m->n);
  return CAPIOK;
}

// Go passes headers as a []string of key, value, ... (GoString each).
CAPIStatus envoyGoFilterHttpSendLocalReply(void* s, int response_code, void* body_text_data, int body_text_len,
                                           void* headers, int headers_num, long long int grpc_status,
                                           void* details_data, int details_len) {
  hostRequest* r = request_of_state(s);
  if (!processing(((processState*)s)->state)) {
    return CAPINotInGo;
  }
  if (r->reply_pending) {
    die("%s: a second sendLocalReply", r->label);
  }
  // Go memory is valid only during this call: copy, as cgo.cc does.
  r->reply_pending = 1;
  r->reply_code = response_code;
  r->reply_body = dupn(body_text_data, (size_t)body_text_len);
  r->reply_grpc_status = grpc_status;
  r->reply_details = dupn(details_data, (size_t)details_len);
  GoString* strs = headers;
  for (int i = 0; i + 1 < headers_num; i += 2) {
    if (strs[i + 1].n > 0) { // Envoy skips empty values
      map_add(&r->reply_headers, strs[i].p, (size_t)strs[i].n, strs[i + 1].p, (size_t)strs[i + 1].n);
    }
  }
  say("%s: sendLocalReply(%d, grpc_status=%lld, details=%s) posted", r->label, response_code, grpc_status, r->reply_details);
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpClearRouteCache(void* rp, bool refresh) {
  hostRequest* r = (hostRequest*)rp;
  if (!request_in_go(r)) {
    return CAPINotInGo;
  }
  r->route_cache_cleared = 1;
  say("%s: clearRouteCache(refresh=%d)", r->label, refresh);
  return CAPIOK;
}

// ValueSslConnectionExists (100) and ValueSslPeerCertificateValidated (102):
// what the filter reads to trust a client certificate's URI SAN.
CAPIStatus envoyGoFilterHttpGetIntegerValue(void* rp, int id, uint64_t* value) {
  hostRequest* r = (hostRequest*)rp;
  if (!request_in_go(r)) {
    return CAPINotInGo;
  }
  switch (id) {
  case 100:
    *value = r->peer_uri_san != NULL;
    return CAPIOK;
  case 101:
  case 102:
    if (r->peer_uri_san == NULL) {
      return CAPIValueNotFound;
    }
    *value = 1;
    return CAPIOK;
  }
  die("%s: envoyGoFilterHttpGetIntegerValue id %d is not implemented by this host", r->label, id);
  return CAPIInternalFailure;
}

// ValueSslUriSanPeerCertificate (116): SANs joined by NUL.
CAPIStatus envoyGoFilterHttpGetStringValue(void* rp, int id, uint64_t* value_data, int* value_len) {
  hostRequest* r = (hostRequest*)rp;
  if (!request_in_go(r)) {
    return CAPINotInGo;
  }
  if (id != 116) {
    die("%s: envoyGoFilterHttpGetStringValue id %d is not implemented by this host", r->label, id);
  }
  if (r->peer_uri_san == NULL) {
    return CAPIValueNotFound;
  }
  free(r->str_value);
  r->str_value = dupn(r->peer_uri_san, strlen(r->peer_uri_san));
  *value_data = (uint64_t)(uintptr_t)r->str_value;
  *value_len = (int)strlen(r->str_value);
  return CAPIOK;
}

// buf is a serialized google.protobuf.Value; the filter sets strings
// (string_value, field 3, wire type 2).
CAPIStatus envoyGoFilterHttpSetDynamicMetadata(void* rp, void* name_data, int name_len, void* key_data, int key_len,
                                               void* buf_data, int buf_len) {
  hostRequest* r = (hostRequest*)rp;
  if (!request_in_go(r)) {
    return CAPINotInGo;
  }
  const unsigned char* b = buf_data;
  if (buf_len >= 2 && b[0] == 0x1a) {
    uint64_t n = 0;
    int shift = 0, i = 1;
    while (i < buf_len && shift < 64) {
      n |= (uint64_t)(b[i] & 0x7f) << shift;
      shift += 7;
      if (!(b[i++] & 0x80)) {
        break;
      }
    }
    if (i + (int)n == buf_len) {
      say("%s: dynamic metadata %.*s.%.*s = \"%.*s\"", r->label, name_len, (char*)name_data, key_len, (char*)key_data,
          (int)n, (char*)b + i);
      return CAPIOK;
    }
  }
  say("%s: dynamic metadata %.*s.%.*s = <%d bytes, not a string Value>", r->label, name_len, (char*)name_data, key_len,
      (char*)key_data, buf_len);
  return CAPIOK;
}

void envoyGoFilterHttpFinalize(void* r, int reason) {
  // Envoy deletes its request object here (the Go GC decides when).
  (void)r;
  (void)reason;
}

void envoyGoFilterLog(uint32_t level, void* message_data, int message_len) {
  static const char* levels[] = {"trace", "debug", "info", "warn", "error", "critical"};
  say("envoy log [%s]: %.*s", level < 6 ? levels[level] : "?", message_len, (char*)message_data);
}

uint32_t envoyGoFilterLogLevel(void) { return 2; } // info

void envoyGoConfigHttpFinalize(void* c) { (void)c; }

CAPIStatus envoyGoFilterHttpDefineMetric(void* cp, uint32_t metric_type, void* name_data, int name_len,
                                         uint32_t* metric_id) {
  hostConfig* c = (hostConfig*)cp;
  if (metric_type != 0) { // Counter
    die("config %s: metric type %u is not implemented by this host", c->name, metric_type);
  }
  if (c->metrics == MAX_METRICS) {
    die("too many metrics");
  }
  c->metric[c->metrics] = dupn(name_data, (size_t)name_len);
  *metric_id = (uint32_t)c->metrics++;
  return CAPIOK;
}

CAPIStatus envoyGoFilterHttpIncrementMetric(void* cp, uint32_t metric_id, int64_t offset) {
  hostConfig* c = (hostConfig*)cp;
  if (metric_id >= (uint32_t)c->metrics) {
    die("config %s: no metric %u", c->name, metric_id);
  }
  c->value[metric_id] += offset;
  say("counter %s += %lld", c->metric[metric_id], (long long)offset);
  return CAPIOK;
}

// ---- callbacks the meshext filter has no business calling ---------------

#define NOT_USED(name)                                                                                         \
  static void name##_called(void) {                                                                          \
    die("libmeshext-golang.so called " #name ", which the meshext filter does not use (this host does not "  \
        "implement it)");                                                                                      \
  }
#define NOT_USED_STATUS(name, ...)                                                                             \
  NOT_USED(name)                                                                                               \
  CAPIStatus name(__VA_ARGS__) {                                                                               \
    name##_called();                                                                                           \
    return CAPIInternalFailure;                                                                                \
  }

NOT_USED_STATUS(envoyGoFilterHttpContinue, void* s, int status)
NOT_USED_STATUS(envoyGoFilterHttpSendPanicReply, void* s, void* details_data, int details_len)
NOT_USED_STATUS(envoyGoFilterHttpAddData, void* s, void* data, int data_len, bool is_streaming)
NOT_USED_STATUS(envoyGoFilterHttpInjectData, void* s, void* data, int data_len)
NOT_USED_STATUS(envoyGoFilterHttpRemoveHeader, void* s, void* key_data, int key_len)
NOT_USED_STATUS(envoyGoFilterHttpGetBuffer, void* s, uint64_t buffer, void* value)
NOT_USED_STATUS(envoyGoFilterHttpDrainBuffer, void* s, uint64_t buffer, uint64_t length)
NOT_USED_STATUS(envoyGoFilterHttpSetBufferHelper, void* s, uint64_t buffer, void* data, int length,
                bufferAction action)
NOT_USED_STATUS(envoyGoFilterHttpCopyTrailers, void* s, void* strs, void* buf)
NOT_USED_STATUS(envoyGoFilterHttpSetTrailer, void* s, void* key_data, int key_len, void* value, int value_len,
                headerAction action)
NOT_USED_STATUS(envoyGoFilterHttpRemoveTrailer, void* s, void* key_data, int key_len)
NOT_USED_STATUS(envoyGoFilterHttpSetUpstreamOverrideHost, void* s, void* host_data, int host_len, bool strict)
NOT_USED_STATUS(envoyGoFilterHttpGetDynamicMetadata, void* r, void* name_data, int name_len, uint64_t* value_data,
                int* value_len)
NOT_USED_STATUS(envoyGoFilterHttpSetStringFilterState, void* r, void* key_data, int key_len, void* value_data,
                int value_len, int state_type, int life_span, int stream_sharing)
NOT_USED_STATUS(envoyGoFilterHttpGetStringFilterState, void* r, void* key_data, int key_len, uint64_t* value_data,
                int* value_len)
NOT_USED_STATUS(envoyGoFilterHttpGetStringProperty, void* r, void* key_data, int key_len, uint64_t* value_data,
                int* value_len, int* rc)
NOT_USED_STATUS(envoyGoFilterHttpGetStringSecret, void* r, void* key_data, int key_len, uint64_t* value_data,
                int* value_len)
NOT_USED_STATUS(envoyGoFilterHttpSetDrainConnectionUponCompletion, void* r)
NOT_USED_STATUS(envoyGoFilterHttpGetMetric, void* c, uint32_t metric_id, uint64_t* value)
NOT_USED_STATUS(envoyGoFilterHttpRecordMetric, void* c, uint32_t metric_id, uint64_t value)

// ---- the library's entry points (libgolang.h), as Envoy's Dso loads them -----

static struct {
  __typeof__(envoyGoFilterNewHttpPluginConfig)* new_config;
  __typeof__(envoyGoFilterMergeHttpPluginConfig)* merge_config;
  __typeof__(envoyGoFilterDestroyHttpPluginConfig)* destroy_config;
  __typeof__(envoyGoFilterOnHttpHeader)* on_header;
  __typeof__(envoyGoFilterOnHttpData)* on_data;
  __typeof__(envoyGoFilterOnHttpLog)* on_log;
  __typeof__(envoyGoFilterOnHttpStreamComplete)* on_stream_complete;
  __typeof__(envoyGoFilterOnHttpDestroy)* on_destroy;
  __typeof__(envoyGoRequestSemaDec)* sema_dec;
  __typeof__(envoyGoFilterCleanUp)* cleanup;
} go;

static void* must_sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (p == NULL) {
    die("cannot find symbol %s: %s", name, dlerror());
  }
  return p;
}

static void load(const char* path) {
  // RTLD_NOW: every callback the library imports must resolve against this
  // host (built with -rdynamic), as it would against Envoy.
  void* lib = dlopen(path, RTLD_NOW);
  if (lib == NULL) {
    die("dlopen %s: %s", path, dlerror());
  }
  go.new_config = must_sym(lib, "envoyGoFilterNewHttpPluginConfig");
  go.merge_config = must_sym(lib, "envoyGoFilterMergeHttpPluginConfig");
  go.destroy_config = must_sym(lib, "envoyGoFilterDestroyHttpPluginConfig");
  go.on_header = must_sym(lib, "envoyGoFilterOnHttpHeader");
  go.on_data = must_sym(lib, "envoyGoFilterOnHttpData");
  go.on_log = must_sym(lib, "envoyGoFilterOnHttpLog");
  go.on_stream_complete = must_sym(lib, "envoyGoFilterOnHttpStreamComplete");
  go.on_destroy = must_sym(lib, "envoyGoFilterOnHttpDestroy");
  go.sema_dec = must_sym(lib, "envoyGoRequestSemaDec");
  go.cleanup = must_sym(lib, "envoyGoFilterCleanUp");
  say("loaded %s: all 10 entry points of Envoy's HttpFilterDsoImpl resolved", path);
}

// ---- config commands --------------------------------------------------------

static char* unhex(const char* hex, size_t* n) {
  size_t l = strlen(hex);
  if (l % 2) {
    die("odd hex length");
  }
  char* b = malloc(l / 2 + 1);
  for (size_t i = 0; i < l / 2; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
      die("bad hex");
    }
    b[i] = (char)v;
  }
  *n = l / 2;
  return b;
}

static hostConfig* new_host_config(const char* name) {
  if (nconfigs == MAX_CONFIGS) {
    die("too many configs");
  }
  hostConfig* c = calloc(1, sizeof(*c));
  c->name = dupn(name, strlen(name));
  configs[nconfigs++] = c;
  return c;
}

// FilterConfig::newGoPluginConfig (is_route 0) and FilterConfigPerRoute's
// RoutePluginConfig (is_route 1).
static void cmd_config(const char* name, const char* hex, int is_route) {
  hostConfig* c = new_host_config(name);
  size_t n;
  c->plugin_config = unhex(hex, &n);
  c->c.plugin_name_ptr = (uint64_t)(uintptr_t)plugin_name;
  c->c.plugin_name_len = strlen(plugin_name);
  c->c.config_ptr = (uint64_t)(uintptr_t)c->plugin_config;
  c->c.config_len = n;
  c->c.is_route_config = is_route;
  c->c.concurrency = 1;
  c->id = go.new_config(&c->c);
  if (c->id == 0) {
    // Envoy throws "golang filter failed to parse plugin config": the
    // listener (or route) is rejected and never serves a request.
    say("%s %s: envoyGoFilterNewHttpPluginConfig -> 0: Envoy rejects the config", is_route ? "routeconfig" : "config", name);
    say("DECISION %s: config rejected (fails closed: no listener serves with it)", name);
    return;
  }
  say("%s %s: envoyGoFilterNewHttpPluginConfig -> id %llu, %d counters defined", is_route ? "routeconfig" : "config", name,
      (unsigned long long)c->id, c->metrics);
}

static void cmd_merge(const char* name, const char* parent, const char* child) {
  hostConfig* p = config_by_name(parent);
  hostConfig* ch = config_by_name(child);
  hostConfig* c = new_host_config(name); // the counters stay the parent's
  c->id = go.merge_config((GoUint64)(uintptr_t)plugin_name, strlen(plugin_name), p->id, ch->id);
  say("merge %s: envoyGoFilterMergeHttpPluginConfig(%llu, %llu) -> id %llu", name, (unsigned long long)p->id,
      (unsigned long long)ch->id, (unsigned long long)c->id);
}

// ---- a request ----------------------------------------------------------------

static int is_grpc(headerMap* m) {
  const char* ct = map_get(m, "content-type");
  return ct != NULL && strncmp(ct, "application/grpc", 16) == 0;
}

// Calls into Go for headers in state ps (doHeaders); returns the status.
static uint64_t do_headers(hostRequest* r, processState* ps, headerMap* m, int end_stream) {
  if (ps->state != WaitingHeader) {
    die("%s: headers in state %d", r->label, ps->state);
  }
  if (ps->is_encoding) {
    r->encoding_headers = m;
  } else {
    r->decoding_headers = m;
  }
  ps->state = ProcessingHeader;
  uint64_t st = go.on_header(ps, (GoUint64)end_stream, (GoUint64)m->n, map_bytes(m));
  // handleHeaderGolangStatus
  switch (st) {
  case 2: // Continue
    ps->state = end_stream ? Done : WaitingData;
    break;
  case 1: // LocalReply: sendLocalReply is already posted
    break;
  default:
    die("%s: unexpected status %s from %s headers", r->label, status_name(st), ps->is_encoding ? "response" : "request");
  }
  return st;
}

static uint64_t do_data(hostRequest* r, processState* ps, const char* data, int end_stream) {
  if (ps->state != WaitingData) {
    die("%s: data in state %d", r->label, ps->state);
  }
  ps->state = ProcessingData;
  // The Go side only ever sees the buffer through callbacks; the meshext
  // filter passes data through without touching it.
  uint64_t st = go.on_data(ps, (GoUint64)end_stream, (GoUint64)(uintptr_t)data, strlen(data));
  if (st != 2) {
    die("%s: unexpected status %s from data", r->label, status_name(st));
  }
  ps->state = end_stream ? Done : WaitingData;
  return st;
}

// The response goes through the filter's encoder side, headers then body,
// as Envoy encodes both upstream responses and local replies.
static void encode_response(hostRequest* r, const char* body) {
  int headers_only = body == NULL || body[0] == 0;
  uint64_t st = do_headers(r, &r->encoding, &r->response_headers, headers_only);
  say("%s: encodeHeaders :status=%s -> %s", r->label, map_get(&r->response_headers, ":status"), status_name(st));
  if (!headers_only) {
    st = do_data(r, &r->encoding, body, 1);
    say("%s: encodeData %zu bytes -> %s", r->label, strlen(body), status_name(st));
  }
  r->encoding_headers = NULL;
}

// Envoy's PercentEncoding::encode for grpc-message: bytes outside ' '..'~'
// and '%' become %XX.
static char* pct_encode(const char* s) {
  char* out = malloc(3 * strlen(s) + 1);
  char* o = out;
  for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
    if (*p < ' ' || *p > '~' || *p == '%') {
      o += sprintf(o, "%%%02X", *p);
    } else {
      *o++ = (char)*p;
    }
  }
  *o = 0;
  return out;
}

// Envoy's Utility::sendLocalReply: gRPC requests get HTTP 200 trailers-only
// with grpc-status (the filter's) and grpc-message (the body).
static char* run_local_reply(hostRequest* r) {
  r->reply_pending = 0;
  r->decoding.state = WaitingHeader; // DecodingProcessorState::sendLocalReply
  headerMap* m = &r->response_headers;
  char code[16];
  if (is_grpc(&r->request_headers)) {
    char grpc_status[32];
    snprintf(grpc_status, sizeof grpc_status, "%lld", r->reply_grpc_status);
    map_add(m, ":status", 7, "200", 3);
    map_add(m, "content-type", 12, "application/grpc", 16);
    map_add(m, "grpc-status", 11, grpc_status, strlen(grpc_status));
    char* msg = pct_encode(r->reply_body);
    map_add(m, "grpc-message", 12, msg, strlen(msg));
    free(msg);
    return NULL;
  }
  snprintf(code, sizeof code, "%d", r->reply_code);
  map_add(m, ":status", 7, code, strlen(code));
  for (int i = 0; i < r->reply_headers.n; i++) {
    map_add(m, r->reply_headers.h[i].key, strlen(r->reply_headers.h[i].key), r->reply_headers.h[i].value,
            strlen(r->reply_headers.h[i].value));
  }
  return r->reply_body;
}

static void oneline(char* s) {
  for (; *s; s++) {
    if (*s == '\n' || *s == '\r') {
      *s = ' ';
    }
  }
}

static void send_request(hostRequest* r, hostConfig* c) {
  if (c->id == 0) {
    die("%s: config %s was rejected; Envoy has no filter to run", r->label, c->name);
  }
  // Filter::initRequest
  r->req.plugin_name.data = plugin_name;
  r->req.plugin_name.len = strlen(plugin_name);
  r->req.configId = c->id;
  r->req.worker_id = 0;
  r->decoding.req = &r->req;
  r->decoding.is_encoding = 0;
  r->decoding.state = WaitingHeader;
  r->encoding.req = &r->req;
  r->encoding.is_encoding = 1;
  r->encoding.state = WaitingHeader;

  uint64_t st = do_headers(r, &r->decoding, &r->request_headers, r->request_body == NULL);
  say("%s: decodeHeaders :authority=%s -> %s", r->label, map_get(&r->request_headers, ":authority"), status_name(st));
  r->decoding_headers = NULL;
  if (st == 2 && r->request_body != NULL) {
    st = do_data(r, &r->decoding, r->request_body, 1);
    say("%s: decodeData %zu bytes -> %s", r->label, strlen(r->request_body), status_name(st));
  }

  if (st == 2) { // Continue: the router picks the cluster_header route's cluster
    if (r->reply_pending) {
      die("%s: Continue after sendLocalReply", r->label);
    }
    const char* cluster = map_get(&r->request_headers, "x-meshext-cluster");
    if (cluster == NULL) {
      die("%s: allowed without a cluster header", r->label);
    }
    char* chosen = dupn(cluster, strlen(cluster));
    say("%s: router: cluster_header x-meshext-cluster -> %s%s", r->label, chosen,
        r->route_cache_cleared ? " (route re-picked after clearRouteCache)" : "");
    map_remove(&r->request_headers, "x-meshext-cluster"); // request_headers_to_remove
    map_add(&r->response_headers, ":status", 7, "200", 3);
    map_add(&r->response_headers, "content-type", 12, "application/json", 16);
    encode_response(r, "{\"upstream\": true}\n");
    say("DECISION %s: allowed, upstream cluster %s, response %s", r->label, chosen,
        map_get(&r->response_headers, ":status"));
  } else { // LocalReply: run the posted sendLocalReply
    if (!r->reply_pending) {
      die("%s: LocalReply without sendLocalReply", r->label);
    }
    int grpc = is_grpc(&r->request_headers);
    char* body = run_local_reply(r);
    encode_response(r, body);
    if (grpc) {
      char* msg = dupn(map_get(&r->response_headers, "grpc-message"), strlen(map_get(&r->response_headers, "grpc-message")));
      oneline(msg);
      say("DECISION %s: local reply, gRPC :status=%s grpc-status=%s grpc-message=\"%s\" (details %s)", r->label,
          map_get(&r->response_headers, ":status"), map_get(&r->response_headers, "grpc-status"), msg, r->reply_details);
    } else {
      char* b = dupn(body, strlen(body));
      oneline(b);
      say("DECISION %s: local reply, HTTP %d content-type=\"%s\" body=\"%s\" (details %s)", r->label, r->reply_code,
          map_get(&r->response_headers, "content-type") ? map_get(&r->response_headers, "content-type") : "",
          b, r->reply_details);
    }
  }

  // Filter::onStreamComplete, the access log (DownstreamEnd = 6), onDestroy.
  atomic_store(&r->req.is_golang_processing_log, 1);
  go.on_stream_complete(&r->req);
  r->decoding_headers = &r->request_headers;
  r->encoding_headers = &r->response_headers;
  go.on_log(&r->req, 6, &r->decoding, &r->encoding, (GoUint64)r->request_headers.n, map_bytes(&r->request_headers), 0, 0,
            (GoUint64)r->response_headers.n, map_bytes(&r->response_headers), 0, 0);
  atomic_store(&r->req.is_golang_processing_log, 0);
  r->decoding_headers = NULL;
  r->encoding_headers = NULL;
  go.on_destroy(&r->req, 0); // DestroyReason::Normal
  say("%s: destroyed", r->label);
  // Envoy frees its request in envoyGoFilterHttpFinalize, which the Go GC
  // calls later; this host leaks it instead.
}

// ---- main ---------------------------------------------------------------------

static char* trim(char* s) {
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) {
    s[--n] = 0;
  }
  return s;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s LIBRARY.so < script\n", argv[0]);
    return 2;
  }
  load(argv[1]);
  static char line[1 << 16];
  hostRequest* r = NULL;
  hostConfig* rc = NULL;
  int requests = 0;
  while (fgets(line, sizeof line, stdin) != NULL) {
    trim(line);
    char* rest = line;
    char* cmd = strsep(&rest, " ");
    if (cmd[0] == 0 || cmd[0] == '#') {
      continue;
    }
    if (strcmp(cmd, "config") == 0 || strcmp(cmd, "routeconfig") == 0) {
      char* name = strsep(&rest, " ");
      if (name == NULL || rest == NULL) {
        die("usage: %s NAME HEX", cmd);
      }
      cmd_config(name, rest, strcmp(cmd, "routeconfig") == 0);
    } else if (strcmp(cmd, "merge") == 0) {
      char* name = strsep(&rest, " ");
      char* parent = strsep(&rest, " ");
      if (name == NULL || parent == NULL || rest == NULL) {
        die("usage: merge NAME PARENT CHILD");
      }
      cmd_merge(name, parent, rest);
    } else if (strcmp(cmd, "request") == 0) {
      char* label = strsep(&rest, " ");
      if (label == NULL || rest == NULL) {
        die("usage: request LABEL CONFIG");
      }
      r = calloc(1, sizeof(*r));
      r->label = dupn(label, strlen(label));
      rc = config_by_name(rest);
    } else if (strcmp(cmd, "h") == 0 || strcmp(cmd, "body") == 0 || strcmp(cmd, "peer") == 0 ||
               strcmp(cmd, "fault") == 0 || strcmp(cmd, "send") == 0) {
      if (r == NULL) {
        die("%s outside a request", cmd);
      }
      if (strcmp(cmd, "h") == 0) {
        char* name = strsep(&rest, " ");
        if (name == NULL || rest == NULL) {
          die("usage: h NAME VALUE");
        }
        map_add(&r->request_headers, name, strlen(name), rest, strlen(rest));
      } else if (strcmp(cmd, "body") == 0) {
        r->request_body = dupn(rest ? rest : "", rest ? strlen(rest) : 0);
      } else if (strcmp(cmd, "peer") == 0) {
        r->peer_uri_san = dupn(rest ? rest : "", rest ? strlen(rest) : 0);
      } else if (strcmp(cmd, "fault") == 0) {
        if (rest == NULL || strcmp(rest, "getheader") != 0) {
          die("unknown fault");
        }
        r->fault_getheader = 1;
      } else {
        send_request(r, rc);
        requests++;
        r = NULL;
      }
    } else {
      die("unknown command %s", cmd);
    }
  }
  for (int i = 0; i < nconfigs; i++) {
    hostConfig* c = configs[i];
    if (c->id == 0) {
      continue;
    }
    for (int m = 0; m < c->metrics; m++) {
      if (c->value[m] != 0) {
        say("config %s: counter %s = %lld", c->name, c->metric[m], (long long)c->value[m]);
      }
    }
  }
  // FilterConfig::~FilterConfig (merged configs are destroyed with a delay).
  for (int i = 0; i < nconfigs; i++) {
    if (configs[i]->id != 0) {
      go.destroy_config(configs[i]->id, 0);
    }
  }
  say("done: %d requests", requests);
  return 0;
}
