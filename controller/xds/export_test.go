package xds

import "google.golang.org/protobuf/proto"

// For jsonwire_test.go, an external test package (it renders through
// controller/render, which imports this package).

// AppendJSON is appendJSON.
var AppendJSON = appendJSON

// AppendJSONWire is appendJSONWire.
var AppendJSONWire = appendJSONWire

// JSONFallbacks is how many items appendJSON left to protojson so far.
func JSONFallbacks() int64 { return jsonFallbacks.Load() }

// JSONFixtures are this package's test resources, TLS and all.
func JSONFixtures() []proto.Message {
	c := withCASecret(testCluster("svc-a", 9), "ca-a", fileSource("/x/sds/ca-a.json", "/x/sds"))
	return []proto.Message{c, testCluster("svc-b", 10), withCASecret(testCluster("svc-c", 11), "ca-c", nil),
		testListener("out-a", "svc-a", "a"), caSecret("ca-a", []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))}
}

// WriteDiscoveryJSON is writeDiscoveryJSON.
var WriteDiscoveryJSON = writeDiscoveryJSON
