package run

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the loop's Prometheus metrics, on a registry of its own so
// several loops (tests) never collide.
type metrics struct {
	reg            *prometheus.Registry
	resources      *prometheus.GaugeVec
	services       *prometheus.GaugeVec
	problems       prometheus.Gauge
	renderErrors   prometheus.Counter
	renderDuration prometheus.Histogram
	lastSuccess    prometheus.Gauge
	reloads        *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshext_resources", Help: "Valid input resources by kind.",
		}, []string{"kind"}),
		services: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshext_services", Help: "MeshExternalServices by state (ready, broken).",
		}, []string{"state"}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshext_input_problems", Help: "Parse, validation and build problems in the current input.",
		}),
		renderErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshext_render_errors_total", Help: "Render errors and warnings, resources held back or dropped, failed reloads and deliveries.",
		}),
		renderDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshext_render_duration_seconds", Help: "Time from reading the drop directory to rendered config.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshext_last_success_timestamp_seconds", Help: "Unix time config was last delivered without error.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshext_reloads_total", Help: "Reload attempts by result (ok, error, unchanged).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.resources, m.services, m.problems, m.renderErrors, m.renderDuration, m.lastSuccess, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
