package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// xDS type URLs.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
)

// File names of the file-based xDS drop (see Bootstrap with XDSFile).
const (
	CDSFile = "cds.json"
	LDSFile = "lds.json"
)

// DiscoveryResponseJSON encodes msgs as the DiscoveryResponse Envoy reads from
// a path_config_source file. The bytes are compact protojson, which is not
// byte-stable across runs: compare versions, not bytes.
//
// Each resource is written in Any's JSON form ({"@type": ..., fields}) from
// the message itself, which skips the binary round trip of packing into an
// Any first (about half the cost at 10k clusters).
func DiscoveryResponseJSON(typeURL, version string, msgs []proto.Message) ([]byte, error) {
	want := strings.TrimPrefix(typeURL, "type.googleapis.com/")
	var buf bytes.Buffer
	head, err := json.Marshal(map[string]string{"versionInfo": version, "typeUrl": typeURL})
	if err != nil {
		return nil, err
	}
	buf.Write(head[:len(head)-1])
	buf.WriteString(`,"resources":[`)
	atType, _ := json.Marshal(typeURL)
	for i, m := range msgs {
		if got := string(m.ProtoReflect().Descriptor().FullName()); got != want {
			return nil, fmt.Errorf("resource of type %s in a %s response", got, typeURL)
		}
		b, err := protojson.Marshal(m)
		if err != nil {
			return nil, err
		}
		b = bytes.TrimSpace(b)
		if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
			return nil, fmt.Errorf("unexpected JSON for %s", want)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"@type":`)
		buf.Write(atType)
		if inner := bytes.TrimSpace(b[1 : len(b)-1]); len(inner) > 0 {
			buf.WriteByte(',')
			buf.Write(inner)
		}
		buf.WriteByte('}')
	}
	buf.WriteString("]}")
	return buf.Bytes(), nil
}

// CDS is the node's cds.json.
func (n *Node) CDS() ([]byte, error) {
	msgs := make([]proto.Message, len(n.Clusters))
	for i, c := range n.Clusters {
		msgs[i] = c
	}
	v, err := n.Version()
	if err != nil {
		return nil, err
	}
	return DiscoveryResponseJSON(ClusterType, v, msgs)
}

// LDS is the node's lds.json.
func (n *Node) LDS() ([]byte, error) {
	msgs := make([]proto.Message, len(n.Listeners))
	for i, l := range n.Listeners {
		msgs[i] = l
	}
	v, err := n.Version()
	if err != nil {
		return nil, err
	}
	return DiscoveryResponseJSON(ListenerType, v, msgs)
}

// SecretFiles returns, per secret, the file SecretsFile mode reads: a
// DiscoveryResponse holding that one secret, keyed by the path under dir.
// The bytes hold private keys: write them with mode 0600, never log them.
func (n *Node) SecretFiles(dir string) (map[string][]byte, error) {
	v, err := n.Version()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(n.Secrets))
	for _, s := range n.Secrets {
		b, err := DiscoveryResponseJSON(SecretType, v, []proto.Message{s})
		if err != nil {
			return nil, err
		}
		out[SecretPath(dir, s.Name)] = b
	}
	return out, nil
}

// CanonicalJSON re-indents protojson output with sorted keys, so equal
// messages give equal bytes (golden files, docs, diffs).
func CanonicalJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	return canonicalize(b)
}

func canonicalize(b []byte) ([]byte, error) {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	e := json.NewEncoder(&out)
	e.SetEscapeHTML(false) // keep "->" and "<" readable in access log formats
	e.SetIndent("", "  ")
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// YAML renders m as YAML (sorted keys), for humans and Envoy's -c.
func YAML(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(b)
}
