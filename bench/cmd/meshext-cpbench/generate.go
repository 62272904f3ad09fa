package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshext/meshext/bench/workload"
	"github.com/meshext/meshext/e2e/testpki"
)

// perFile MES are written to each resource file: a drop directory of
// moderately sized files, as a GitOps tree would have.
const perFile = 100

// generate writes n MES with TLS (inline CA, server name, exact SAN) and two
// HostnameGenerators, so every MES gets two hostnames. Endpoints are IPs on
// loopback (STATIC clusters): nothing is resolved or contacted.
func generate(dir string, n int) (files int, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	ca, err := testpki.NewCA(testpki.CommonName("meshext cpbench CA"))
	if err != nil {
		return 0, err
	}
	caB64 := base64.StdEncoding.EncodeToString(ca.CertPEM)
	gens := workload.HostnameGenerators()
	if err := os.WriteFile(filepath.Join(dir, "00-hostnamegenerators.yaml"), []byte(gens), 0o644); err != nil {
		return 0, err
	}
	files = 1
	var b strings.Builder
	flush := func(i int) error {
		if b.Len() == 0 {
			return nil
		}
		p := filepath.Join(dir, fmt.Sprintf("mes-%06d.yaml", i/perFile))
		files++
		err := os.WriteFile(p, []byte(b.String()), 0o644)
		b.Reset()
		return err
	}
	for i := 0; i < n; i++ {
		if i > 0 && i%perFile == 0 {
			if err := flush(i - 1); err != nil {
				return files, err
			}
		}
		if b.Len() > 0 {
			b.WriteString("---\n")
		}
		b.WriteString(workload.MES(i, 10000+i%50000, caB64))
	}
	return files, flush(n - 1)
}

// editOne changes the endpoint port of MES i in place (one resource file
// rewritten atomically, as an editor or a GitOps sync would).
func editOne(dir string, i, newPort int) (string, error) {
	p := filepath.Join(dir, fmt.Sprintf("mes-%06d.yaml", i/perFile))
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	docs := strings.Split(string(data), "---\n")
	k := i % perFile
	if k >= len(docs) || !strings.Contains(docs[k], "name: "+workload.Name(i)+"\n") {
		return "", fmt.Errorf("MES %s not found in %s", workload.Name(i), p)
	}
	lines := strings.Split(docs[k], "\n")
	done := false
	for j, l := range lines {
		if strings.HasPrefix(l, "    port: ") && j > 0 && strings.HasPrefix(lines[j-1], "  - address: ") {
			lines[j] = fmt.Sprintf("    port: %d", newPort)
			done = true
		}
	}
	if !done {
		return "", fmt.Errorf("no endpoint port in %s", workload.Name(i))
	}
	docs[k] = strings.Join(lines, "\n")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}
