package envoytest

import (
	"math"
	"testing"
)

func TestParseWrkCounts(t *testing.T) {
	out := `Running 2s test @ http://127.0.0.1:4000/
  1 threads and 8 connections
  58211 requests in 2.00s, 9.16MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 11
Requests/sec:  29105.50
`
	ok, bad, err := parseWrkCounts(out)
	if err != nil || ok != 58200 || bad != 14 {
		t.Fatalf("ok=%d bad=%d err=%v, want 58200 14 nil", ok, bad, err)
	}
	if _, _, err := parseWrkCounts("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Fatal("no total accepted")
	}
	if _, _, err := parseWrkCounts("  10 requests in 1.00s, 1KB read\n  Non-2xx or 3xx responses: 10\n"); err == nil {
		t.Fatal("all failures accepted")
	}
}

func TestMedianRatio(t *testing.T) {
	// Round 2 is the noisy one; the median ignores it.
	got := medianRatio([]float64{95, 40, 96}, []float64{100, 100, 100})
	if math.Abs(got-0.95) > 1e-9 {
		t.Fatalf("median ratio %v, want 0.95", got)
	}
	if got := medianRatio([]float64{90, 98}, []float64{100, 100}); math.Abs(got-0.94) > 1e-9 {
		t.Fatalf("even count: %v, want 0.94", got)
	}
	if got := medianRatio(nil, nil); got != 0 {
		t.Fatalf("empty: %v", got)
	}
}

func TestMedian(t *testing.T) {
	in := []float64{3, 1, 2, 10}
	if m := Median(in); m != 2.5 {
		t.Errorf("median = %v, want 2.5", m)
	}
	if in[0] != 3 || in[3] != 10 {
		t.Errorf("Median reordered its input: %v", in)
	}
	if m := Median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("odd median = %v, want 3", m)
	}
	if m := Median(nil); m != 0 {
		t.Errorf("empty median = %v, want 0", m)
	}
}
