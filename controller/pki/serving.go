package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"time"
)

// ServingCertificate issues a server certificate from ca for names (DNS
// names or IP addresses, what clients dial), and returns it through a
// tls.Config GetCertificate callback that issues a new one in memory after
// two thirds of its life (RenewAt); on a failed renewal the current one
// serves until it expires. The key is never written. o gives the subject
// (CommonName defaults to names[0]), URIs and lifetime; its names and key
// usage are set here.
func ServingCertificate(ca *CA, names []string, o LeafOptions) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if len(names) == 0 {
		return nil, errors.New("a serving certificate needs at least one DNS name or IP address")
	}
	o.DNSNames, o.IPs = nil, nil
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			o.IPs = append(o.IPs, ip)
		} else {
			o.DNSNames = append(o.DNSNames, n)
		}
	}
	if o.CommonName == "" {
		o.CommonName = names[0]
	}
	o.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	issue := func() (*tls.Certificate, error) {
		kp, err := ca.Issue(o)
		if err != nil {
			return nil, err
		}
		c := kp.TLSCertificate()
		return &c, nil
	}
	cur, err := issue()
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		if time.Now().After(RenewAt(cur.Leaf)) {
			if next, err := issue(); err == nil {
				cur = next
			}
		}
		return cur, nil
	}, nil
}
