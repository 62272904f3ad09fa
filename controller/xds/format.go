package xds

import (
	"fmt"
	"io"
	"path/filepath"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshext/meshext/controller/names"
)

// Format is how the files of a drop are encoded. Envoy's path_config_source
// picks its parser by the file's extension, so the format is in every file
// name and in every path a bootstrap, cluster or listener names.
type Format string

const (
	// FormatJSON (the default) is protojson: readable with cat and jq.
	FormatJSON Format = "json"
	// FormatProto is binary protobuf. At 10k services protojson is most of
	// the cost of a drop (it decodes and re-encodes every Any): the binary
	// form is some 50 times cheaper to write, and cheaper for Envoy to read.
	FormatProto Format = "pb"
)

// ParseFormat reads a --xds-format value ("" is JSON).
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatJSON:
		return FormatJSON, nil
	case FormatProto:
		return FormatProto, nil
	}
	return "", fmt.Errorf("file format %q: want %q or %q", s, FormatJSON, FormatProto)
}

// Ext is the file extension Envoy reads the format by.
func (f Format) Ext() string {
	if f == FormatProto {
		return ".pb"
	}
	return ".json"
}

// CDSPath is the clusters file of a node.
func (f Format) CDSPath(dir, node string) string {
	return filepath.Join(NodeDir(dir, node), "cds"+f.Ext())
}

// LDSPath is the listeners file of a node.
func (f Format) LDSPath(dir, node string) string {
	return filepath.Join(NodeDir(dir, node), "lds"+f.Ext())
}

// SecretFile is the file of one secret in the SDS directory sdsDir.
func (f Format) SecretFile(sdsDir, secret string) string {
	return filepath.Join(sdsDir, f.fileName(secret))
}

// RoutePath is the file of one route table of a node.
func (f Format) RoutePath(dir, node, route string) string {
	return filepath.Join(RouteDir(dir, node), f.fileName(route))
}

// fileName is the file of a named resource (a secret, a route table).
func (f Format) fileName(name string) string { return names.PathElement(name) + f.Ext() }

// writeDiscovery writes one DiscoveryResponse file in format f.
func writeDiscovery(w io.Writer, f Format, version, typeURL string, items []proto.Message) error {
	if f != FormatProto {
		return writeDiscoveryJSON(w, version, typeURL, items)
	}
	dr := &discoveryv3.DiscoveryResponse{VersionInfo: version, TypeUrl: typeURL, Resources: make([]*anypb.Any, len(items))}
	for i, it := range items {
		a, err := anypb.New(it)
		if err != nil {
			return err
		}
		dr.Resources[i] = a
	}
	b, err := deterministic.Marshal(dr)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readDiscovery reads a DiscoveryResponse file written in format f.
func readDiscovery(data []byte, f Format, dr *discoveryv3.DiscoveryResponse) error {
	if f == FormatProto {
		return proto.Unmarshal(data, dr)
	}
	return protojson.Unmarshal(data, dr)
}
