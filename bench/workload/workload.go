// Package workload is the control-plane benchmark's generated resource set,
// shared by meshext-cpbench and controller/run's BenchmarkReloadHTTP so the
// two measure the same input: MeshExternalServices with TLS (one inline CA,
// server name, exact SAN) on loopback IP endpoints, and two
// HostnameGenerators, so every service gets two hostnames.
package workload

import "fmt"

// hostnameGenerator is one HostnameGenerator: name and hostname suffix.
const hostnameGenerator = `apiVersion: kuma.io/v1alpha1
kind: HostnameGenerator
metadata:
  name: %s
  namespace: kuma-system
  labels:
    kuma.io/mesh: default
spec:
  selector:
    meshExternalService:
      matchLabels:
        kuma.io/origin: zone
  template: "{{ .DisplayName }}.%s"
`

// HostnameGenerators is the file holding both HostnameGenerators.
func HostnameGenerators() string {
	return fmt.Sprintf(hostnameGenerator, "svc", "svc.meshext.local") + "---\n" + fmt.Sprintf(hostnameGenerator, "ext", "ext.bench.local")
}

// Name is the name of service i.
func Name(i int) string { return fmt.Sprintf("ext-%05d", i) }

// MES is service i's document, its endpoint on port, trusting the CA whose
// PEM is base64 caB64.
func MES(i, port int, caB64 string) string {
	name := Name(i)
	return fmt.Sprintf(`apiVersion: kuma.io/v1alpha1
kind: MeshExternalService
metadata:
  name: %s
  namespace: kuma-system
  labels:
    kuma.io/mesh: default
spec:
  match:
    type: HostnameGenerator
    port: 443
    protocol: http
  endpoints:
  - address: 127.0.%d.%d
    port: %d
  tls:
    enabled: true
    verification:
      serverName: %s.example.com
      subjectAltNames:
      - type: Exact
        value: %s.example.com
      caCert:
        inline: %s
`, name, 1+(i/250)%250, 1+i%250, port, name, name, caB64)
}
