package render

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The seed: "The port field when omitted means that all traffic will be
// matched." A service without match.port gets a transparent filter chain on
// its VIP with no destination port; one with a port keeps the port match.
func TestMatchPortOmittedMatchesEveryPort(t *testing.T) {
	w := world(svc("any-port", "tcp", 0, ep("1.2.3.4", 5000)), svc("one-port", "tcp", 5432, ep("1.2.3.5", 5432)))
	n := onlyNode(t, mustRender(t, w, Options{}))
	var found int
	for _, l := range n.Listeners {
		if l.Name != TransparentListenerName {
			continue
		}
		for _, fc := range l.FilterChains {
			switch fc.Name {
			case w.Services[0].ClusterName():
				found++
				assert.Nil(t, fc.FilterChainMatch.DestinationPort, "no port match")
				assert.Equal(t, "242.0.0.1", fc.FilterChainMatch.PrefixRanges[0].AddressPrefix)
			case w.Services[1].ClusterName():
				found++
				require.NotNil(t, fc.FilterChainMatch.DestinationPort)
				assert.Equal(t, uint32(5432), fc.FilterChainMatch.DestinationPort.Value)
			}
		}
	}
	assert.Equal(t, 2, found)
}
