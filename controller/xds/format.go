package xds

import (
	"fmt"
	"io"
	"path/filepath"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/meshext/meshext/controller/names"
)

// Format is how the files of a drop are encoded. Envoy's path_config_source
// picks its parser by the file's extension, so the format is in every file
// name and in every path a bootstrap, cluster or listener names.
type Format string

const (
	// FormatJSON (the default) is protojson's JSON form (printed by
	// jsonwire.go): readable with cat and jq.
	FormatJSON Format = "json"
	// FormatProto is binary protobuf: smaller than JSON, cheaper to write
	// (the encodings the versions are hashed from, as they are) and
	// cheaper for Envoy to read.
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

// writeDiscovery writes one DiscoveryResponse file in format f. wires, when
// not nil, are the items' deterministic wire forms (encodeList), which the
// binary format packs as they are.
func writeDiscovery(w io.Writer, f Format, version, typeURL string, items []proto.Message, wires [][]byte) error {
	if f != FormatProto {
		return writeDiscoveryJSON(w, version, typeURL, items, wires)
	}
	return writeDiscoveryProto(w, version, typeURL, items, wires)
}

// DiscoveryResponse's and Any's field numbers, for writeDiscoveryProto.
const (
	drVersionInfo protowire.Number = 1
	drResources   protowire.Number = 2
	drTypeURL     protowire.Number = 4
	anyTypeURL    protowire.Number = 1
	anyValue      protowire.Number = 2
)

// writeDiscoveryProto writes the bytes the deterministic marshalling of a
// DiscoveryResponse of the items packed as Anys gives (fields in number
// order, empty ones left out), one resource at a time: building that
// message cost a copy of every resource in its Any and another of the whole
// file in one buffer. An item without its wire form is marshalled here.
func writeDiscoveryProto(w io.Writer, version, typeURL string, items []proto.Message, wires [][]byte) error {
	var head []byte
	if version != "" {
		head = protowire.AppendTag(head, drVersionInfo, protowire.BytesType)
		head = protowire.AppendString(head, version)
	}
	if _, err := w.Write(head); err != nil {
		return err
	}
	for i, it := range items {
		var b []byte
		if wires != nil {
			b = wires[i]
		} else {
			var err error
			if b, err = deterministic.Marshal(it); err != nil {
				return err
			}
		}
		url := anyTypePrefix + string(it.ProtoReflect().Descriptor().FullName())
		size := protowire.SizeTag(anyTypeURL) + protowire.SizeBytes(len(url))
		if len(b) > 0 {
			size += protowire.SizeTag(anyValue) + protowire.SizeBytes(len(b))
		}
		head = protowire.AppendTag(head[:0], drResources, protowire.BytesType)
		head = protowire.AppendVarint(head, uint64(size))
		head = protowire.AppendTag(head, anyTypeURL, protowire.BytesType)
		head = protowire.AppendString(head, url)
		if len(b) > 0 {
			head = protowire.AppendTag(head, anyValue, protowire.BytesType)
			head = protowire.AppendVarint(head, uint64(len(b)))
		}
		if _, err := w.Write(head); err != nil {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	if typeURL == "" {
		return nil
	}
	head = protowire.AppendTag(head[:0], drTypeURL, protowire.BytesType)
	head = protowire.AppendString(head, typeURL)
	_, err := w.Write(head)
	return err
}

// anyTypePrefix is what anypb.New puts before a message's full name.
const anyTypePrefix = "type.googleapis.com/"

// readDiscovery reads a DiscoveryResponse file written in format f.
func readDiscovery(data []byte, f Format, dr *discoveryv3.DiscoveryResponse) error {
	if f == FormatProto {
		return proto.Unmarshal(data, dr)
	}
	return protojson.Unmarshal(data, dr)
}
