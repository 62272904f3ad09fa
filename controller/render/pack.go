package render

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// allValidator is what protoc-gen-validate generates for every Envoy message.
type allValidator interface{ ValidateAll() error }

// validate runs every PGV rule of m. PGV does not descend into Any, so each
// inner message is validated on its own before it is packed (see pack).
func validate(m proto.Message) error {
	v, ok := m.(allValidator)
	if !ok {
		return fmt.Errorf("%T has no validation rules", m)
	}
	if err := v.ValidateAll(); err != nil {
		return errors.New(flattenValidation(err))
	}
	return nil
}

// pack validates m, then wraps it in an Any. Packing an invalid message is a bug
// in this package, so the error names the message type.
func pack(m proto.Message) (*anypb.Any, error) {
	if err := validate(m); err != nil {
		return nil, fmt.Errorf("%T: %w", m, err)
	}
	// Deterministic: an Any's bytes go into versions and Envoy's own change
	// detection, so maps inside (RBAC policies, a JSON log format's Struct)
	// must give the same bytes every time.
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, deterministic); err != nil {
		return nil, fmt.Errorf("pack %T: %w", m, err)
	}
	return a, nil
}

// flattenValidation turns PGV's multi-error into one line.
func flattenValidation(err error) string {
	type multi interface{ AllErrors() []error }
	if m, ok := err.(multi); ok {
		s := ""
		for i, e := range m.AllErrors() {
			if i > 0 {
				s += "; "
			}
			s += e.Error()
		}
		return s
	}
	return err.Error()
}

// deterministic is the marshaller whose bytes are stable for equal messages
// (protojson is deliberately not), used for versions.
var deterministic = proto.MarshalOptions{Deterministic: true}

// digest hashes the deterministic encoding of msgs, in order. The
// encodings are garbage at once; at 10k services on every core their
// buffers would raise the peak heap, so they are reused.
func digest(msgs ...proto.Message) ([]byte, error) {
	h := sha256.New()
	bp := digestBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxDigestBuf {
			digestBufs.Put(bp)
		}
	}()
	var prefix [24]byte
	for _, m := range msgs {
		b, err := deterministic.MarshalAppend((*bp)[:0], m)
		if err != nil {
			return nil, err
		}
		*bp = b
		// The length prefix keeps ("ab","c") apart from ("a","bc").
		h.Write(append(strconv.AppendInt(prefix[:0], int64(len(b)), 10), ':'))
		h.Write(b)
	}
	return h.Sum(nil), nil
}

// digestBufs are digest's encoding buffers; one bigger than maxDigestBuf
// (a node's listener with every service) is not kept.
var digestBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxDigestBuf = 64 << 10

// lazyDigest is the digest of a cluster and its secrets, computed on the
// first call and then kept: only Node.Version needs it, and meshext run never
// asks (its versions are the xds package's hashes), so a cold render at 10k
// services marshals no cluster for it. The messages are read-only, so later
// is the same as now.
type lazyDigest func() ([]byte, error)

func digestLater(c *clusterv3.Cluster, secrets []*tlsv3.Secret) lazyDigest {
	return sync.OnceValues(func() ([]byte, error) {
		msgs := make([]proto.Message, 0, 1+len(secrets))
		msgs = append(msgs, c)
		for _, s := range secrets {
			msgs = append(msgs, s)
		}
		return digest(msgs...)
	})
}

func hexDigest(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
