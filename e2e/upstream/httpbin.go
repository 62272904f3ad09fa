package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Response headers every HTTP stand-in adds, so tests can tell which listener
// and protocol actually served a request that went through Envoy.
const (
	HeaderProtocol   = "X-Standin-Protocol"    // e.g. HTTP/1.1, HTTP/2.0
	HeaderTLS        = "X-Standin-Tls"         // TLS version name or "none"
	HeaderServerName = "X-Standin-Server-Name" // SNI, when TLS
)

// IndexHTML is what "/" returns: the seed says curl prints httpbin.org HTML.
const IndexHTML = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="UTF-8"><title>httpbin.org</title></head>
<body>
<h2>httpbin.org</h2>
<p>A simple HTTP Request &amp; Response Service (meshext loopback stand-in).</p>
<ul>
<li><a href="/get">/get</a> the request's query parameters, headers and URL as JSON</li>
<li><a href="/headers">/headers</a> the request's headers</li>
<li><a href="/ip">/ip</a> the caller's address</li>
<li><a href="/anything">/anything</a> everything about the request</li>
<li>/status/{code} replies with that status code</li>
</ul>
</body>
</html>
`

// HTTPBinHandler is an httpbin.org-like handler: /, /get, /headers, /ip,
// /anything[/...], /status/{code}. JSON bodies use httpbin's shape (headers
// as a map of canonical name to comma-joined values, args likewise).
func HTTPBinHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, IndexHTML)
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"args": args(r), "headers": headers(r), "origin": origin(r), "url": fullURL(r), "method": r.Method,
		})
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"headers": headers(r)})
	})
	mux.HandleFunc("/ip", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"origin": origin(r)})
	})
	anything := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"args": args(r), "headers": headers(r), "origin": origin(r), "url": fullURL(r),
			"method": r.Method, "data": string(body),
		})
	}
	mux.HandleFunc("/anything", anything)
	mux.HandleFunc("/anything/", anything)
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil || code < 100 || code > 599 {
			http.Error(w, "invalid status code", http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderProtocol, r.Proto)
		if r.TLS != nil {
			w.Header().Set(HeaderTLS, tls.VersionName(r.TLS.Version))
			w.Header().Set(HeaderServerName, r.TLS.ServerName)
		} else {
			w.Header().Set(HeaderTLS, "none")
		}
		w.Header().Set("Server", "meshext-standin")
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// joinValues is httpbin's rendering of repeated values.
func joinValues(vs []string) string { return strings.Join(vs, ",") }

func headers(r *http.Request) map[string]string {
	h := map[string]string{"Host": r.Host}
	for k, vs := range r.Header {
		h[k] = joinValues(vs)
	}
	return h
}

func args(r *http.Request) map[string]string {
	a := map[string]string{}
	for k, vs := range r.URL.Query() {
		a[k] = joinValues(vs)
	}
	return a
}

func origin(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		return xff
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func fullURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// StartHTTPBin serves HTTPBinHandler: HTTP/1.1 and prior-knowledge h2c in
// plaintext (port 80 style), HTTP/1.1 and h2 by ALPN with TLS (443 style).
func StartHTTPBin(opts ...Option) (*Server, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	ln, err := listen(o)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           HTTPBinHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Refused handshakes are expected in negative tests: debug level.
		ErrorLog:  slog.NewLogLogger(o.logger.Handler(), slog.LevelDebug),
		Protocols: new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	cfg := o.tlsConfig("h2", "http/1.1")
	var serveLn net.Listener = ln
	if cfg != nil {
		srv.Protocols.SetHTTP2(true)
		srv.TLSConfig = cfg
		serveLn = tls.NewListener(ln, cfg)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(serveLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.logger.Warn("httpbin serve", "addr", ln.Addr(), "err", err)
		}
	}()
	return &Server{
		kind: "http",
		addr: ln.Addr().String(),
		tls:  cfg != nil,
		close: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := srv.Shutdown(ctx)
			if err != nil {
				err = srv.Close()
			}
			<-done
			return err
		},
	}, nil
}

// sortedKeys is used by tests and the ready line for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
