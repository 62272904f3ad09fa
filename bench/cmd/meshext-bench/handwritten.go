package main

import (
	"bytes"
	"encoding/json"
	"os"
	"text/template"
)

// The hand-written baseline (variant b): the smallest Envoy config that
// carries the same route, written as an Envoy user would, with no meshext.
// Anything meshext adds on top of it shows up in the (c)/(b) ratio.

type handParams struct {
	Proto      string
	ListenPort int
	UpHost     string
	UpPort     int
	CAFile     string // tls only
	ServerName string // tls only
	// AccessLogFormat, when set, adds a stdout access log with this format
	// (a diagnostic: the bench's own tests use it).
	AccessLogFormat string
}

var handTemplate = template.Must(template.New("envoy").Funcs(template.FuncMap{"json": jsonString}).Parse(`# Hand-written minimal config: {{.Proto}} on 127.0.0.1:{{.ListenPort}} -> {{.UpHost}}:{{.UpPort}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: bench
    address: {socket_address: {address: 127.0.0.1, port_value: {{.ListenPort}}}}
    filter_chains:
    - filters:
{{- if eq .Proto "tcp"}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: upstream
{{- template "accesslog" .}}
{{- else}}
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
{{- template "accesslog" .}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: upstream}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end}}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 5s
{{- if eq .Proto "grpc"}}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
{{- end}}
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {socket_address: {address: {{.UpHost}}, port_value: {{.UpPort}}}}
{{- if eq .Proto "tls"}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {{.ServerName}}
        common_tls_context:
          validation_context:
            trusted_ca: {filename: {{.CAFile}}}
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: {exact: {{.ServerName}}}
{{- end}}
{{define "accesslog"}}
{{- if .AccessLogFormat}}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: {{json .AccessLogFormat}}
{{- end}}
{{- end}}
`))

// jsonString quotes s as JSON, which is also a valid YAML scalar.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeHandConfig(path string, p handParams) error {
	var b bytes.Buffer
	if err := handTemplate.Execute(&b, p); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
