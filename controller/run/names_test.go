package run

import (
	"strings"
	"testing"
)

func TestZoneFlagFollowsTheZoneLabelRule(t *testing.T) {
	_, err := New(Config{Dir: t.TempDir(), XDS: XDSADS, ADSListen: "127.0.0.1:0", Zone: "Zone_1"})
	if err == nil || !strings.Contains(err.Error(), `--zone "Zone_1": a lowercase RFC 1123 label`) {
		t.Fatalf("New: %v", err)
	}
}
