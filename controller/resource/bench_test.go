package resource

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshext/meshext/bench/workload"
	"github.com/meshext/meshext/e2e/testpki"
)

// BenchmarkLoad10k loads 10,000 MeshExternalServices in 100 files, as
// meshext-cpbench writes them (TLS with an inline CA, two hostname
// generators), and reports the CPU time per load next to the wall time:
// loading is parallel.
func BenchmarkLoad10k(b *testing.B) {
	dir := b.TempDir()
	ca, err := testpki.NewCA(testpki.CommonName("meshext cpbench CA"))
	if err != nil {
		b.Fatal(err)
	}
	caB64 := base64.StdEncoding.EncodeToString(ca.CertPEM)
	if err := os.WriteFile(filepath.Join(dir, "00-hostnamegenerators.yaml"), []byte(workload.HostnameGenerators()), 0o644); err != nil {
		b.Fatal(err)
	}
	for f := 0; f < 100; f++ {
		var s strings.Builder
		for i := f * 100; i < (f+1)*100; i++ {
			if s.Len() > 0 {
				s.WriteString("---\n")
			}
			s.WriteString(workload.MES(i, 10000+i, caB64))
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("mes-%06d.yaml", f)), []byte(s.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		set, errs, err := Load([]string{dir}, Options{Zone: "default"})
		if err != nil || len(errs) > 0 || len(set.MeshExternalServices) != 10000 {
			b.Fatalf("load: %v %v", err, errs)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
