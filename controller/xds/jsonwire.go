package xds

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// A JSON encoder for the drop files that prints what protojson prints
// (same names, same well-known-type forms, same omitted defaults), compact
// and deterministic (map keys sorted). protojson was most of a 10k-service
// JSON drop's cost: it walks every field through protoreflect and a generic
// encoder, and decodes each Any's bytes into a new message first. This one
// reads the deterministic binary form the version hashes are made of, with
// a plan per message type made once (field number -> quoted JSON name and
// kind), so an Any's payload is printed straight from its bytes.
//
// Safety net: anything outside what this file handles makes the whole item
// go through protojson instead, so the output is protojson's or the same
// JSON value, never another: a proto2 or editions message or one with
// extensions, invalid UTF-8, an out-of-range Duration, an Any it cannot
// resolve, and the binary forms a marshaller never writes but Any bytes
// could hold (a field twice, two members of a oneof, a list in two runs,
// a known field of the wrong wire type). The rare well-known types
// (Timestamp, Struct, Value, ListValue, FieldMask) are decoded and printed
// by protojson itself. jsonwire_test.go checks the equivalence on the
// rendered configs and by fuzzing.

// errJSONFallback says an item needs protojson.
var errJSONFallback = errors.New("message needs protojson")

// jsonFallbacks counts the items printed by protojson (tests: the rendered
// configs need none).
var jsonFallbacks atomic.Int64

// appendJSON appends protojson's form of m to b, or, with typeURL set, that
// of an Any of m with that type URL ("@type" first, then m's fields, as
// protojson prints an Any).
func appendJSON(b []byte, m proto.Message, typeURL string) ([]byte, error) {
	wire, err := deterministic.Marshal(m)
	if err != nil {
		return appendProtojson(b, m, typeURL)
	}
	return appendJSONWire(b, m, wire, typeURL)
}

// appendJSONWire is appendJSON given wire, m's deterministic binary form.
func appendJSONWire(b []byte, m proto.Message, wire []byte, typeURL string) ([]byte, error) {
	e := jsonEnc{b: b}
	if err := e.message(planOf(m.ProtoReflect().Descriptor()), wire, typeURL); err == nil {
		return e.b, nil
	}
	return appendProtojson(b, m, typeURL)
}

// appendProtojson is the fallback: protojson's output, made an Any's as
// this writer did before it had its own encoder (same output and errors).
func appendProtojson(b []byte, m proto.Message, typeURL string) ([]byte, error) {
	jsonFallbacks.Add(1)
	body, err := protojson.Marshal(m)
	if err != nil || typeURL == "" {
		return append(b, body...), err
	}
	body = bytes.TrimLeft(body, " ")
	if len(body) < 2 || body[0] != '{' {
		return b, fmt.Errorf("protojson of %s is not an object", m.ProtoReflect().Descriptor().FullName())
	}
	e := jsonEnc{b: append(b, `{"@type":`...)}
	if err := e.str(typeURL); err != nil {
		return b, err
	}
	if rest := bytes.TrimLeft(body[1:], " "); rest[0] != '}' {
		e.b = append(e.b, ',')
	}
	return append(e.b, body[1:]...), nil
}

// wktKind is how a message type is printed.
type wktKind uint8

const (
	plainMessage wktKind = iota
	anyMessage
	durationMessage
	wrapperMessage // BoolValue, UInt32Value...: the bare value
	// byProtojson: decoded and printed by protojson. Timestamp, Struct,
	// Value, ListValue, FieldMask (rare in our configs), and any message
	// not of proto3 syntax or with extensions (proto2 required fields,
	// groups, editions features: none in Envoy's API).
	byProtojson
)

// msgPlan is what is known of a message type before printing one.
type msgPlan struct {
	kind   wktKind
	wkt    bool // a google.protobuf well-known type ("value" in an Any)
	md     protoreflect.MessageDescriptor
	fields []fieldPlan
	// byNum[n] is 1 + the index in fields of field number n (0: unknown);
	// numbers past it are looked up in the descriptor.
	byNum  []int32
	oneofs int
}

// fieldPlan is one field's part of a plan.
type fieldPlan struct {
	name  []byte // `"jsonName":`
	fd    protoreflect.FieldDescriptor
	kind  protoreflect.Kind
	wire  protowire.Type // of one element
	index int
	oneof int // 1 + index of its (non-synthetic) oneof, or 0
	// implicit: proto3 presence, a zero value is not printed.
	list, isMap, implicit, packable bool
	key, val                        *fieldPlan // a map's entry fields
	sub                             atomic.Pointer[msgPlan]
}

var plans sync.Map // protoreflect.MessageDescriptor -> *msgPlan

func planOf(md protoreflect.MessageDescriptor) *msgPlan {
	if p, ok := plans.Load(md); ok {
		return p.(*msgPlan)
	}
	p := &msgPlan{md: md}
	if md.FullName().Parent() == "google.protobuf" {
		p.wkt = true
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
		default:
			p.wkt = false // Empty and the descriptor types print as messages
		}
	}
	if md.ParentFile().Syntax() != protoreflect.Proto3 || md.ExtensionRanges().Len() > 0 {
		p.kind = byProtojson
	}
	p.oneofs = md.Oneofs().Len()
	fields := md.Fields()
	p.fields = make([]fieldPlan, fields.Len())
	for i := range p.fields {
		fd := fields.Get(i)
		fp := &p.fields[i]
		fp.fd, fp.kind, fp.index = fd, fd.Kind(), i
		e := jsonEnc{}
		if e.str(fd.JSONName()) != nil {
			p.kind = byProtojson // not UTF-8: protojson's error
		}
		fp.name = append(e.b, ':')
		fp.wire = wireType(fd.Kind())
		fp.list, fp.isMap = fd.IsList(), fd.IsMap()
		fp.implicit = !fd.HasPresence() && !fp.list && !fp.isMap
		fp.packable = fp.list && fp.wire != protowire.BytesType
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			fp.oneof = od.Index() + 1
		}
		if fp.isMap {
			// The entry's fields, printed by the entry's own plan.
			entry := planOf(fd.Message())
			fp.key, fp.val = &entry.fields[0], &entry.fields[1]
		}
		if fp.kind == protoreflect.GroupKind {
			p.kind = byProtojson
		}
		if n := int(fd.Number()); n < 1024 {
			if n >= len(p.byNum) {
				p.byNum = append(p.byNum, make([]int32, n+1-len(p.byNum))...)
			}
			p.byNum[n] = int32(i + 1)
		}
	}
	got, _ := plans.LoadOrStore(md, p)
	return got.(*msgPlan)
}

// field is the plan of field number n, or nil for an unknown field.
func (p *msgPlan) field(n protowire.Number) *fieldPlan {
	if int(n) < len(p.byNum) {
		if i := p.byNum[n]; i > 0 {
			return &p.fields[i-1]
		}
		return nil
	}
	if fd := p.md.Fields().ByNumber(n); fd != nil {
		return &p.fields[fd.Index()]
	}
	return nil
}

// msg is the plan of a message-kind field's type.
func (fp *fieldPlan) msg() *msgPlan {
	if p := fp.sub.Load(); p != nil {
		return p
	}
	p := planOf(fp.fd.Message())
	fp.sub.Store(p)
	return p
}

func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.VarintType
}

type jsonEnc struct{ b []byte }

// seenSet marks the fields (or oneofs) of one message met so far.
type seenSet struct {
	small [2]uint64
	big   []bool
}

func newSeen(n int) seenSet {
	if n > 128 {
		return seenSet{big: make([]bool, n)}
	}
	return seenSet{}
}

// add marks i and says whether it was marked already.
func (s *seenSet) add(i int) bool {
	if s.big != nil {
		was := s.big[i]
		s.big[i] = true
		return was
	}
	w, bit := &s.small[i/64], uint64(1)<<(i%64)
	was := *w&bit != 0
	*w |= bit
	return was
}

// message prints the message of plan p encoded in b; typeURL, when set,
// makes it an Any's content.
func (e *jsonEnc) message(p *msgPlan, b []byte, typeURL string) error {
	if p.kind != plainMessage {
		if typeURL != "" {
			if !p.wkt {
				return errJSONFallback // a proto2 message in an Any: its fields go inline
			}
			e.b = append(e.b, `{"@type":`...)
			if err := e.str(typeURL); err != nil {
				return err
			}
			e.b = append(e.b, `,"value":`...)
			if err := e.message(p, b, ""); err != nil {
				return err
			}
			e.b = append(e.b, '}')
			return nil
		}
		switch p.kind {
		case anyMessage:
			return e.anyMsg(p, b)
		case durationMessage:
			return e.duration(p, b)
		case wrapperMessage:
			return e.wrapper(p, b)
		default:
			return e.byProtojson(p, b)
		}
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
	seen, oneofs := newSeen(len(p.fields)), newSeen(p.oneofs)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errJSONFallback
		}
		b = b[n:]
		fp := p.field(num)
		if fp == nil {
			// Unknown: protojson leaves it out.
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errJSONFallback
			}
			b = b[n:]
			continue
		}
		if seen.add(fp.index) || (fp.oneof > 0 && oneofs.add(fp.oneof-1)) {
			return errJSONFallback // last-wins or merge: protojson decides
		}
		mark := len(e.b)
		if !first {
			e.b = append(e.b, ',')
		}
		e.b = append(e.b, fp.name...)
		var wrote bool
		var err error
		switch {
		case fp.isMap:
			b, err = e.mapRun(fp, num, typ, b)
			wrote = true
		case fp.list:
			b, wrote, err = e.listRun(fp, num, typ, b)
		case typ != fp.wire:
			return errJSONFallback
		default:
			b, wrote, err = e.value(fp, typ, b, fp.implicit)
		}
		if err != nil {
			return err
		}
		if wrote {
			first = false
		} else {
			e.b = e.b[:mark]
		}
	}
	e.b = append(e.b, '}')
	return nil
}

// nextSame consumes the tag at the start of b if it is field num's.
func nextSame(b []byte, num protowire.Number) ([]byte, protowire.Type, bool) {
	if len(b) == 0 {
		return b, 0, false
	}
	n2, typ, n := protowire.ConsumeTag(b)
	if n < 0 || n2 != num {
		return b, 0, false
	}
	return b[n:], typ, true
}

// listRun prints a repeated field's run of elements (packed or not) that
// starts with a value of type typ at b; wrote is false for no element.
func (e *jsonEnc) listRun(fp *fieldPlan, num protowire.Number, typ protowire.Type, b []byte) (rest []byte, wrote bool, err error) {
	e.b = append(e.b, '[')
	count := 0
	for {
		switch {
		case typ == protowire.BytesType && fp.packable:
			payload, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return b, false, errJSONFallback
			}
			b = b[n:]
			for len(payload) > 0 {
				if count > 0 {
					e.b = append(e.b, ',')
				}
				if payload, _, err = e.value(fp, fp.wire, payload, false); err != nil {
					return b, false, err
				}
				count++
			}
		case typ == fp.wire:
			if count > 0 {
				e.b = append(e.b, ',')
			}
			if b, _, err = e.value(fp, typ, b, false); err != nil {
				return b, false, err
			}
			count++
		default:
			return b, false, errJSONFallback
		}
		var more bool
		if b, typ, more = nextSame(b, num); !more {
			break
		}
	}
	e.b = append(e.b, ']')
	return b, count > 0, nil
}

// mapEntry is one map entry met: its key and its value's encoding.
type mapEntry struct {
	s      string
	i      int64
	u      uint64
	valTyp protowire.Type
	val    []byte // nil: absent (the zero value)
}

// mapRun prints a map field's run of entries, sorted by key as protojson
// does (false before true, numbers by value, strings by bytes), the last
// of equal keys winning as in decoding.
func (e *jsonEnc) mapRun(fp *fieldPlan, num protowire.Number, typ protowire.Type, b []byte) ([]byte, error) {
	var entries []mapEntry
	for {
		if typ != protowire.BytesType {
			return b, errJSONFallback
		}
		entry, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return b, errJSONFallback
		}
		b = b[n:]
		me, err := e.mapEntry(fp, entry)
		if err != nil {
			return b, err
		}
		entries = append(entries, me)
		var more bool
		if b, typ, more = nextSame(b, num); !more {
			break
		}
	}
	var compare func(a, b mapEntry) int
	switch fp.key.kind {
	case protoreflect.StringKind:
		compare = func(a, b mapEntry) int { return cmp.Compare(a.s, b.s) }
	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
		protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
		compare = func(a, b mapEntry) int { return cmp.Compare(a.i, b.i) }
	default: // unsigned, and bool as 0 or 1
		compare = func(a, b mapEntry) int { return cmp.Compare(a.u, b.u) }
	}
	slices.SortStableFunc(entries, compare)
	e.b = append(e.b, '{')
	first := true
	for i, me := range entries {
		if i+1 < len(entries) && compare(me, entries[i+1]) == 0 {
			continue // a later entry of the key replaces it
		}
		if !first {
			e.b = append(e.b, ',')
		}
		first = false
		switch fp.key.kind {
		case protoreflect.StringKind:
			if err := e.str(me.s); err != nil {
				return b, err
			}
		case protoreflect.BoolKind:
			e.b = append(strconv.AppendBool(append(e.b, '"'), me.u != 0), '"')
		case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
			protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
			e.b = append(strconv.AppendInt(append(e.b, '"'), me.i, 10), '"')
		default:
			e.b = append(strconv.AppendUint(append(e.b, '"'), me.u, 10), '"')
		}
		e.b = append(e.b, ':')
		val, typ := me.val, me.valTyp
		if val == nil {
			val, typ = zeroWire[fp.val.wire], fp.val.wire
		}
		if _, _, err := e.value(fp.val, typ, val, false); err != nil {
			return b, err
		}
	}
	e.b = append(e.b, '}')
	return b, nil
}

// zeroWire is each wire type's encoding of a zero value.
var zeroWire = map[protowire.Type][]byte{
	protowire.VarintType:  {0},
	protowire.Fixed32Type: {0, 0, 0, 0},
	protowire.Fixed64Type: {0, 0, 0, 0, 0, 0, 0, 0},
	protowire.BytesType:   {0},
}

// mapEntry reads one entry message.
func (e *jsonEnc) mapEntry(fp *fieldPlan, b []byte) (mapEntry, error) {
	var me mapEntry
	var seenKey, seenVal bool
	err := fieldsOneTwo(b, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		if num == 2 {
			if seenVal || typ != fp.val.wire {
				return false
			}
			seenVal = true
			me.valTyp, me.val = typ, v
			return true
		}
		if seenKey || typ != fp.key.wire {
			return false
		}
		seenKey = true
		switch typ {
		case protowire.BytesType:
			s, _ := protowire.ConsumeString(v)
			if !utf8.ValidString(s) {
				return false
			}
			me.s = s
		case protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			me.i, me.u = varintKey(fp.key.kind, x)
		case protowire.Fixed32Type:
			x, _ := protowire.ConsumeFixed32(v)
			me.i, me.u = int64(int32(x)), uint64(x)
		case protowire.Fixed64Type:
			x, _ := protowire.ConsumeFixed64(v)
			me.i, me.u = int64(x), x
		default:
			return false
		}
		return true
	})
	return me, err
}

// fieldsOneTwo walks the encoded message b, handing f the number, wire type
// and whole value encoding of each field numbered 1 or 2 (the fields of a
// map entry and of the small well-known types) and skipping the others. A
// malformed encoding, or f saying false, falls back.
func fieldsOneTwo(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte) bool) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errJSONFallback
		}
		b = b[n:]
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return errJSONFallback
		}
		if (num == 1 || num == 2) && !f(num, typ, b[:n]) {
			return errJSONFallback
		}
		b = b[n:]
	}
	return nil
}

// varintKey is a varint map key as decoding makes it, signed and unsigned.
func varintKey(k protoreflect.Kind, x uint64) (int64, uint64) {
	switch k {
	case protoreflect.Int32Kind:
		return int64(int32(x)), 0
	case protoreflect.Sint32Kind:
		return int64(protowire.DecodeZigZag(x & math.MaxUint32)), 0
	case protoreflect.Sint64Kind:
		return protowire.DecodeZigZag(x), 0
	case protoreflect.Uint32Kind:
		return 0, uint64(uint32(x))
	case protoreflect.BoolKind:
		if x != 0 {
			return 0, 1
		}
		return 0, 0
	}
	return int64(x), x
}

// value prints one value of field fp encoded with wire type typ at the
// start of b (typ is fp's); omitZero leaves out a zero value (wrote false).
func (e *jsonEnc) value(fp *fieldPlan, typ protowire.Type, b []byte, omitZero bool) (rest []byte, wrote bool, err error) {
	switch typ {
	case protowire.VarintType:
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return b, false, errJSONFallback
		}
		return b[n:], e.varint(fp, x, omitZero), nil
	case protowire.Fixed32Type:
		x, n := protowire.ConsumeFixed32(b)
		if n < 0 {
			return b, false, errJSONFallback
		}
		if omitZero && x == 0 {
			return b[n:], false, nil
		}
		switch fp.kind {
		case protoreflect.FloatKind:
			e.float(float64(math.Float32frombits(x)), 32)
		case protoreflect.Sfixed32Kind:
			e.b = strconv.AppendInt(e.b, int64(int32(x)), 10)
		default:
			e.b = strconv.AppendUint(e.b, uint64(x), 10)
		}
		return b[n:], true, nil
	case protowire.Fixed64Type:
		x, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			return b, false, errJSONFallback
		}
		if omitZero && x == 0 {
			return b[n:], false, nil
		}
		switch fp.kind {
		case protoreflect.DoubleKind:
			e.float(math.Float64frombits(x), 64)
		case protoreflect.Sfixed64Kind:
			e.b = append(strconv.AppendInt(append(e.b, '"'), int64(x), 10), '"')
		default:
			e.b = append(strconv.AppendUint(append(e.b, '"'), x, 10), '"')
		}
		return b[n:], true, nil
	case protowire.BytesType:
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return b, false, errJSONFallback
		}
		b = b[n:]
		switch fp.kind {
		case protoreflect.MessageKind:
			return b, true, e.message(fp.msg(), v, "")
		case protoreflect.StringKind:
			if omitZero && len(v) == 0 {
				return b, false, nil
			}
			return b, true, e.str(string(v))
		default:
			if omitZero && len(v) == 0 {
				return b, false, nil
			}
			e.b = append(e.b, '"')
			e.b = base64.StdEncoding.AppendEncode(e.b, v)
			e.b = append(e.b, '"')
			return b, true, nil
		}
	}
	return b, false, errJSONFallback
}

// varint prints a varint-encoded value as decoding would make it (int32
// truncated, zigzag undone); false when it is zero and omitZero.
func (e *jsonEnc) varint(fp *fieldPlan, x uint64, omitZero bool) bool {
	switch fp.kind {
	case protoreflect.BoolKind:
		if omitZero && x == 0 {
			return false
		}
		e.b = strconv.AppendBool(e.b, x != 0)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind:
		v, _ := varintKey(fp.kind, x)
		if omitZero && v == 0 {
			return false
		}
		e.b = strconv.AppendInt(e.b, v, 10)
	case protoreflect.Uint32Kind:
		if omitZero && uint32(x) == 0 {
			return false
		}
		e.b = strconv.AppendUint(e.b, uint64(uint32(x)), 10)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind:
		// 64-bit integers are JSON strings: a double cannot hold them all.
		v, _ := varintKey(fp.kind, x)
		if omitZero && v == 0 {
			return false
		}
		e.b = append(strconv.AppendInt(append(e.b, '"'), v, 10), '"')
	case protoreflect.Uint64Kind:
		if omitZero && x == 0 {
			return false
		}
		e.b = append(strconv.AppendUint(append(e.b, '"'), x, 10), '"')
	default: // enum
		v := protoreflect.EnumNumber(int32(x))
		if omitZero && v == 0 {
			return false
		}
		ed := fp.fd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			e.b = append(e.b, "null"...)
		} else if vd := ed.Values().ByNumber(v); vd != nil {
			// Enum value names are identifiers: nothing to escape.
			e.b = append(e.b, '"')
			e.b = append(e.b, vd.Name()...)
			e.b = append(e.b, '"')
		} else {
			e.b = strconv.AppendInt(e.b, int64(v), 10)
		}
	}
	return true
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
// (resolved in the global registry) with "@type" first.
func (e *jsonEnc) anyMsg(p *msgPlan, b []byte) error {
	var url, value []byte
	var seenURL, seenValue bool
	err := fieldsOneTwo(b, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		x, n := protowire.ConsumeBytes(v)
		if typ != protowire.BytesType || n < 0 || (num == 1 && seenURL) || (num == 2 && seenValue) {
			return false
		}
		if num == 1 {
			url, seenURL = x, true
		} else {
			value, seenValue = x, true
		}
		return true
	})
	if err != nil {
		return err
	}
	if len(url) == 0 {
		if len(value) > 0 {
			return errJSONFallback // protojson's error: type_url not set
		}
		e.b = append(e.b, "{}"...)
		return nil
	}
	if !utf8.Valid(url) {
		return errJSONFallback
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(string(url))
	if err != nil {
		return errJSONFallback
	}
	return e.message(planOf(mt.Descriptor()), value, string(url))
}

// duration prints "1.5s" as protojson does: 0, 3, 6 or 9 fractional
// digits; out of range is protojson's error.
func (e *jsonEnc) duration(p *msgPlan, b []byte) error {
	var secs, nanos int64
	var seen [3]bool
	err := fieldsOneTwo(b, func(num protowire.Number, typ protowire.Type, v []byte) bool {
		x, n := protowire.ConsumeVarint(v)
		if typ != protowire.VarintType || n < 0 || seen[num] {
			return false
		}
		seen[num] = true
		if num == 1 {
			secs = int64(x)
		} else {
			nanos = int64(int32(x))
		}
		return true
	})
	if err != nil {
		return err
	}
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
		// Nine digits (nanos+1e9 without its leading 1), less trailing "000"s.
		frac := strconv.AppendInt(append(make([]byte, 0, 11), '.'), nanos+1e9, 10)
		frac = append(frac[:1], frac[2:]...)
		for len(frac) > 4 && string(frac[len(frac)-3:]) == "000" {
			frac = frac[:len(frac)-3]
		}
		e.b = append(e.b, frac...)
	}
	e.b = append(e.b, `s"`...)
	return nil
}

// wrapper prints a wrapper's value bare (its zero when absent).
func (e *jsonEnc) wrapper(p *msgPlan, b []byte) error {
	fp := &p.fields[0]
	val, typ := zeroWire[fp.wire], fp.wire
	seen := false
	err := fieldsOneTwo(b, func(num protowire.Number, t protowire.Type, v []byte) bool {
		if num != 1 {
			return true // a wrapper has field 1 only; others are unknown fields
		}
		if t != fp.wire || seen {
			return false
		}
		val, typ, seen = v, t, true
		return true
	})
	if err != nil {
		return err
	}
	_, _, err = e.value(fp, typ, val, false)
	return err
}

// byProtojson decodes the message and prints it with protojson.
func (e *jsonEnc) byProtojson(p *msgPlan, b []byte) error {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(p.md.FullName())
	if err != nil {
		return errJSONFallback
	}
	m := mt.New().Interface()
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(b, m); err != nil {
		return errJSONFallback
	}
	out, err := protojson.MarshalOptions{}.MarshalAppend(e.b, m)
	if err != nil {
		return errJSONFallback
	}
	e.b = out
	return nil
}
