package dns

import "github.com/prometheus/client_golang/prometheus"

var (
	queriesDesc = prometheus.NewDesc("meshext_dns_queries_total",
		"DNS queries by outcome: answered (VIP record or hosts file), nxdomain (unknown name in our zones), forwarded, forward_failed (SERVFAIL), refused (no forwarding for this client), rate_limited (dropped or refused).",
		[]string{"result"}, nil)
	recordsDesc = prometheus.NewDesc("meshext_dns_records",
		"Names currently answered, by source (vip, hosts).", []string{"source"}, nil)
)

// Collector exposes the server's counters to Prometheus; register it on the
// controller's registry.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queriesDesc
	ch <- recordsDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for result, v := range map[string]uint64{
		"answered": st.Answered, "nxdomain": st.NXDomain, "forwarded": st.Forwarded, "forward_failed": st.ForwardFailed,
		"refused": st.Refused, "rate_limited": st.RateLimited,
	} {
		ch <- prometheus.MustNewConstMetric(queriesDesc, prometheus.CounterValue, float64(v), result)
	}
	snap := c.s.snap.Load()
	ch <- prometheus.MustNewConstMetric(recordsDesc, prometheus.GaugeValue, float64(len(snap.records)), "vip")
	ch <- prometheus.MustNewConstMetric(recordsDesc, prometheus.GaugeValue, float64(len(snap.hosts)), "hosts")
}
