package xds

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A JSON encoder for the drop files that prints what protojson prints
// (same names, same well-known-type forms, same omitted defaults), compact
// and deterministic (map keys sorted). protojson is most of a 10k-service
// JSON drop's cost: per field it goes through a generic encoder with
// sorting and a closure per value. Here each message type gets a plan once
// (its fields' quoted JSON names), and values go straight into one buffer.
//
// Safety net: anything outside what this file handles (a proto2 or editions
// message, an extension, invalid UTF-8, an out-of-range Duration, an Any it
// cannot resolve...) makes the whole item go through protojson instead, so
// the output is protojson's or an equivalent of it, never something else;
// jsonwire_test.go checks the equivalence on the rendered configs and by
// fuzzing. The rare well-known types (Timestamp, Struct, Value, ListValue,
// FieldMask) are printed by protojson itself, one sub-message at a time.

// errJSONFallback says an item needs protojson.
var errJSONFallback = errors.New("message needs protojson")

// appendJSON appends protojson's form of m to b, or, with typeURL set, that
// of an Any of m with that type URL ("@type" first, then m's fields, or
// "value" for a well-known type, as protojson prints an Any).
func appendJSON(b []byte, m proto.Message, typeURL string) ([]byte, error) {
	start := len(b)
	e := jsonEnc{b: b}
	err := e.message(planOf(m.ProtoReflect().Descriptor()), m.ProtoReflect(), typeURL)
	if err == nil {
		return e.b, nil
	}
	b = e.b[:start]
	jsonFallbacks.Add(1)
	body, err := protojson.Marshal(m)
	if err != nil || typeURL == "" {
		return append(b, body...), err
	}
	// The item as an Any, the way this writer always spliced it: its
	// object with "@type" first (same output and errors as before).
	body = bytes.TrimLeft(body, " ")
	if len(body) < 2 || body[0] != '{' {
		return b, fmt.Errorf("protojson of %s is not an object", m.ProtoReflect().Descriptor().FullName())
	}
	e = jsonEnc{b: append(b, `{"@type":`...)}
	if err := e.str(typeURL); err != nil {
		return b, err
	}
	b = e.b
	if rest := bytes.TrimLeft(body[1:], " "); rest[0] != '}' {
		b = append(b, ',')
	}
	return append(b, body[1:]...), nil
}

// jsonFallbacks counts the items printed by protojson (tests: the rendered
// configs need none).
var jsonFallbacks atomic.Int64

// wktKind is how a message type is printed.
type wktKind uint8

const (
	plainMessage wktKind = iota
	anyMessage
	durationMessage
	wrapperMessage // BoolValue, UInt32Value...: the bare value
	// byProtojson: Timestamp, Struct, Value, ListValue, FieldMask (rare in
	// our configs), and any message not of proto3 syntax (proto2 required
	// fields, groups, editions features: none in Envoy's API).
	byProtojson
)

// msgPlan is what is known of a message type before printing one.
type msgPlan struct {
	kind wktKind
	// names are the fields' `"jsonName":`, by field index.
	names [][]byte
}

var plans sync.Map // protoreflect.MessageDescriptor -> *msgPlan

func planOf(md protoreflect.MessageDescriptor) *msgPlan {
	if p, ok := plans.Load(md); ok {
		return p.(*msgPlan)
	}
	p := &msgPlan{}
	if md.FullName().Parent() == "google.protobuf" {
		switch md.Name() {
		case "Any":
			p.kind = anyMessage
		case "Duration":
			p.kind = durationMessage
		case "BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value",
			"FloatValue", "DoubleValue", "StringValue", "BytesValue":
			p.kind = wrapperMessage
		case "Timestamp", "Struct", "Value", "ListValue", "FieldMask":
			p.kind = byProtojson
		}
	}
	if md.ParentFile().Syntax() != protoreflect.Proto3 {
		p.kind = byProtojson
	}
	fields := md.Fields()
	p.names = make([][]byte, fields.Len())
	for i := range p.names {
		e := jsonEnc{}
		if e.str(fields.Get(i).JSONName()) != nil {
			p.kind = byProtojson // not UTF-8: protojson's error
		}
		p.names[i] = append(e.b, ':')
	}
	got, _ := plans.LoadOrStore(md, p)
	return got.(*msgPlan)
}

type jsonEnc struct{ b []byte }

// message prints m; typeURL, when set, makes it an Any's content.
func (e *jsonEnc) message(p *msgPlan, m protoreflect.Message, typeURL string) error {
	if typeURL != "" && p.kind != plainMessage {
		if p.kind == byProtojson && m.Descriptor().FullName().Parent() != "google.protobuf" {
			return errJSONFallback // a proto2 message inside an Any: its fields go inline
		}
		e.b = append(e.b, `{"@type":`...)
		if err := e.str(typeURL); err != nil {
			return err
		}
		e.b = append(e.b, `,"value":`...)
		if err := e.message(p, m, ""); err != nil {
			return err
		}
		e.b = append(e.b, '}')
		return nil
	}
	switch p.kind {
	case anyMessage:
		return e.anyMsg(m)
	case durationMessage:
		return e.duration(m)
	case wrapperMessage:
		fd := m.Descriptor().Fields().ByNumber(1)
		return e.singular(fd, m.Get(fd))
	case byProtojson:
		var err error
		e.b, err = protojson.MarshalOptions{}.MarshalAppend(e.b, m.Interface())
		if err != nil {
			return errJSONFallback
		}
		return nil
	}
	e.b = append(e.b, '{')
	first := true
	if typeURL != "" {
		e.b = append(e.b, `"@type":`...)
		if err := e.str(typeURL); err != nil {
			return err
		}
		first = false
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.IsExtension() {
			err = errJSONFallback
			return false
		}
		if !first {
			e.b = append(e.b, ',')
		}
		first = false
		e.b = append(e.b, p.names[fd.Index()]...)
		switch {
		case fd.IsList():
			err = e.list(fd, v.List())
		case fd.IsMap():
			err = e.mapping(fd, v.Map())
		default:
			err = e.singular(fd, v)
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	e.b = append(e.b, '}')
	return nil
}

func (e *jsonEnc) list(fd protoreflect.FieldDescriptor, l protoreflect.List) error {
	e.b = append(e.b, '[')
	for i := range l.Len() {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		if err := e.singular(fd, l.Get(i)); err != nil {
			return err
		}
	}
	e.b = append(e.b, ']')
	return nil
}

// mapping prints a map with its keys in protojson's order: false before
// true, integers by value, strings by bytes.
func (e *jsonEnc) mapping(fd protoreflect.FieldDescriptor, mp protoreflect.Map) error {
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	switch fd.MapKey().Kind() {
	case protoreflect.StringKind:
		slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
	case protoreflect.BoolKind:
		slices.SortFunc(keys, func(a, b protoreflect.MapKey) int {
			if a.Bool() == b.Bool() {
				return 0
			}
			if !a.Bool() {
				return -1
			}
			return 1
		})
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return cmpOrdered(a.Uint(), b.Uint()) })
	default:
		slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return cmpOrdered(a.Int(), b.Int()) })
	}
	vfd := fd.MapValue()
	e.b = append(e.b, '{')
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		if err := e.str(k.String()); err != nil {
			return err
		}
		e.b = append(e.b, ':')
		if err := e.singular(vfd, mp.Get(k)); err != nil {
			return err
		}
	}
	e.b = append(e.b, '}')
	return nil
}

func cmpOrdered[T int64 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (e *jsonEnc) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		e.b = strconv.AppendBool(e.b, v.Bool())
	case protoreflect.StringKind:
		return e.str(v.String())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		e.b = strconv.AppendInt(e.b, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		e.b = strconv.AppendUint(e.b, v.Uint(), 10)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// 64-bit integers are JSON strings: a double cannot hold them all.
		e.b = append(strconv.AppendInt(append(e.b, '"'), v.Int(), 10), '"')
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		e.b = append(strconv.AppendUint(append(e.b, '"'), v.Uint(), 10), '"')
	case protoreflect.FloatKind:
		e.float(v.Float(), 32)
	case protoreflect.DoubleKind:
		e.float(v.Float(), 64)
	case protoreflect.BytesKind:
		raw := v.Bytes()
		e.b = append(e.b, '"')
		e.b = base64.StdEncoding.AppendEncode(e.b, raw)
		e.b = append(e.b, '"')
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			e.b = append(e.b, "null"...)
			return nil
		}
		if vd := ed.Values().ByNumber(v.Enum()); vd != nil {
			// Enum value names are identifiers: nothing to escape.
			e.b = append(e.b, '"')
			e.b = append(e.b, vd.Name()...)
			e.b = append(e.b, '"')
		} else {
			e.b = strconv.AppendInt(e.b, int64(v.Enum()), 10)
		}
	case protoreflect.MessageKind:
		return e.message(planOf(fd.Message()), v.Message(), "")
	default: // groups: proto2 only
		return errJSONFallback
	}
	return nil
}

// float prints as protojson does: NaN and the infinities as strings, other
// values as the shortest decimal that reads back, with an exponent only
// below 1e-6 or from 1e21 on (ECMAScript's rule), e-07 written e-7.
func (e *jsonEnc) float(f float64, bitSize int) {
	switch {
	case math.IsNaN(f):
		e.b = append(e.b, `"NaN"`...)
		return
	case math.IsInf(f, 1):
		e.b = append(e.b, `"Infinity"`...)
		return
	case math.IsInf(f, -1):
		e.b = append(e.b, `"-Infinity"`...)
		return
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 {
		small, large := a < 1e-6, a >= 1e21
		if bitSize == 32 {
			small, large = float32(a) < 1e-6, float32(a) >= 1e21
		}
		if small || large {
			format = 'e'
		}
	}
	start := len(e.b)
	e.b = strconv.AppendFloat(e.b, f, format, -1, bitSize)
	if format == 'e' {
		if n := len(e.b); n-start >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

// str prints s as a JSON string, escaping what protojson escapes (quote,
// backslash, control characters); invalid UTF-8 is protojson's error.
func (e *jsonEnc) str(s string) error {
	e.b = append(e.b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= ' ' && c != '"' && c != '\\' && c < utf8.RuneSelf {
			j := i + 1
			for j < len(s) && s[j] >= ' ' && s[j] != '"' && s[j] != '\\' && s[j] < utf8.RuneSelf {
				j++
			}
			e.b = append(e.b, s[i:j]...)
			i = j
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return errJSONFallback
			}
			e.b = append(e.b, s[i:i+n]...)
			i += n
			continue
		}
		e.b = append(e.b, '\\')
		switch c {
		case '"', '\\':
			e.b = append(e.b, c)
		case '\b':
			e.b = append(e.b, 'b')
		case '\f':
			e.b = append(e.b, 'f')
		case '\n':
			e.b = append(e.b, 'n')
		case '\r':
			e.b = append(e.b, 'r')
		case '\t':
			e.b = append(e.b, 't')
		default:
			e.b = append(e.b, 'u')
			e.b = append(e.b, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
			e.b = strconv.AppendUint(e.b, uint64(c), 16)
		}
		i++
	}
	e.b = append(e.b, '"')
	return nil
}

// anyMsg prints an Any as protojson does: {} when empty, else its message
// resolved from the global registry, with "@type" first.
func (e *jsonEnc) anyMsg(m protoreflect.Message) error {
	fds := m.Descriptor().Fields()
	url, value := m.Get(fds.ByNumber(1)).String(), m.Get(fds.ByNumber(2)).Bytes()
	if url == "" {
		if len(value) > 0 {
			return errJSONFallback // protojson's error: type_url not set
		}
		e.b = append(e.b, "{}"...)
		return nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return errJSONFallback
	}
	em := mt.New()
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(value, em.Interface()); err != nil {
		return errJSONFallback
	}
	return e.message(planOf(em.Descriptor()), em, url)
}

// duration prints "1.5s": 0, 3, 6 or 9 fractional digits; out of range is
// protojson's error.
func (e *jsonEnc) duration(m protoreflect.Message) error {
	fds := m.Descriptor().Fields()
	secs, nanos := m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int()
	const maxSecs, maxNanos = 315576000000, 999999999
	if secs < -maxSecs || secs > maxSecs || nanos < -maxNanos || nanos > maxNanos ||
		(secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		return errJSONFallback
	}
	e.b = append(e.b, '"')
	if secs < 0 || nanos < 0 {
		e.b = append(e.b, '-')
		secs, nanos = -secs, -nanos
	}
	e.b = strconv.AppendInt(e.b, secs, 10)
	if nanos != 0 {
		frac := strconv.AppendInt([]byte(".000000000")[:1], nanos+1e9, 10)
		frac = append(frac[:1], frac[2:]...) // drop the leading 1 of nanos+1e9
		for len(frac) > 4 && string(frac[len(frac)-3:]) == "000" {
			frac = frac[:len(frac)-3]
		}
		e.b = append(e.b, frac...)
	}
	e.b = append(e.b, `s"`...)
	return nil
}
