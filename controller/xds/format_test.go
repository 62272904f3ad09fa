package xds

import (
	"bytes"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The binary file is, byte for byte, the deterministic marshalling of the
// DiscoveryResponse it stands for, whether the items' encodings come from
// encodeList or are marshalled while writing.
func TestWriteDiscoveryProtoIsTheMarshalledResponse(t *testing.T) {
	meta, err := structpb.NewStruct(map[string]any{"b": 1.0, "a": "x", "c": map[string]any{"z": true, "y": nil}})
	if err != nil {
		t.Fatal(err)
	}
	withMap := testCluster("m", 3)
	withMap.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"k2": meta, "k1": meta}}
	cases := []struct {
		name, version, typeURL string
		items                  []proto.Message
	}{
		{"clusters", "v1", resourcev3.ClusterType, []proto.Message{testCluster("a", 1), withMap, &clusterv3.Cluster{}, testCluster("b", 70000)}},
		{"listener and route", "0123456789abcdef", resourcev3.ListenerType, []proto.Message{testListener("l", "a", "st"), testRoute("r", "a")}},
		{"no version", "", resourcev3.SecretType, []proto.Message{testCluster("a", 1)}},
		{"nothing", "v", resourcev3.ClusterType, nil},
		{"no type", "", "", nil},
	}
	for _, c := range cases {
		dr := &discoveryv3.DiscoveryResponse{VersionInfo: c.version, TypeUrl: c.typeURL}
		for _, it := range c.items {
			a := &anypb.Any{}
			if err := anypb.MarshalFrom(a, it, deterministic); err != nil {
				t.Fatal(err)
			}
			dr.Resources = append(dr.Resources, a)
		}
		want, err := deterministic.Marshal(dr)
		if err != nil {
			t.Fatal(err)
		}
		_, wires, err := encodeList(named2(c.items))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range [][][]byte{wires, nil} {
			var buf bytes.Buffer
			if err := writeDiscovery(&buf, FormatProto, c.version, c.typeURL, c.items, w); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s (wires given: %v): %d bytes differ from the marshalled DiscoveryResponse's %d", c.name, w != nil, buf.Len(), len(want))
			}
			var back discoveryv3.DiscoveryResponse
			if err := readDiscovery(buf.Bytes(), FormatProto, &back); err != nil || !proto.Equal(&back, dr) {
				t.Errorf("%s: read back %v, %v", c.name, &back, err)
			}
		}
	}
}

// named2 gives test items a name for encodeList (the name only orders the version).
func named2(items []proto.Message) []named {
	out := make([]named, len(items))
	for i, it := range items {
		out[i] = it.(named)
	}
	return out
}
