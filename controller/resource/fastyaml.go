package resource

import (
	"bytes"

	"go.yaml.in/yaml/v3"
)

// fastYAML reads the plain block subset of YAML that generated and most
// hand-written resource files use, into the same yaml.Node trees as the
// YAML decoder, several times faster (the decoder's scanner was two thirds
// of loading 10k MeshExternalServices). It gives up on anything else, and
// the whole file is then read by the decoder: ok is false as soon as a
// line is not one of
//
//	---                       (at column 0: a document start)
//	key: value                key a plain word ([A-Za-z0-9_][A-Za-z0-9_./-]*)
//	key:                      followed by a deeper block, or a "- " list at the key's column
//	- value   - key: value    list items
//
// where a value is a one-line plain scalar (no '#', no ": ", no leading
// indicator) or a one-line quoted string without escapes, lines break at
// '\n' only and every byte is printable ASCII or a space. Comments, tabs,
// CR, non-ASCII text, flow collections, anchors, aliases, tags, block
// scalars, multi-line scalars, empty values and empty documents all fall
// back. TestFastYAML* compare its trees with the decoder's.
type fastYAML struct {
	data []byte

	// The current line: it starts at ls, its content at cs (column ind; in a
	// list item, past the "- "), it ends at le (before the '\n').
	ls, cs, le, ind, line int
	eof, sep              bool // past the last line; the line is "---"
	bad                   bool // the input left the subset

	words map[string]word // interned keys and short values
	// Nodes and their Content are allocated in chunks (a document has
	// dozens); with reuse, each document takes the previous one's.
	reuse  bool
	nodes  [][]yaml.Node
	ptrs   [][]*yaml.Node
	depth  int // of the block being read: deep nesting is left to the decoder, which limits it
	ni, nj int // the next node: nodes[ni][nj]
	pi, pj int // the next Content room: ptrs[pi][pj:]
}

func newFastYAML(data []byte) *fastYAML {
	p := &fastYAML{data: data, words: map[string]word{}}
	p.load(0, 1)
	return p
}

// load makes the first non-blank line at or after pos (line number line)
// current.
func (p *fastYAML) load(pos, line int) {
	for {
		if pos >= len(p.data) {
			p.eof, p.sep = true, false
			p.ls, p.cs, p.le, p.ind, p.line = len(p.data), len(p.data), len(p.data), 0, line
			return
		}
		le := bytes.IndexByte(p.data[pos:], '\n')
		if le < 0 {
			le = len(p.data)
		} else {
			le += pos
		}
		cs := pos
		for cs < le && p.data[cs] == ' ' {
			cs++
		}
		if cs == le { // blank
			pos, line = le+1, line+1
			continue
		}
		p.ls, p.cs, p.le, p.ind, p.line = pos, cs, le, cs-pos, line
		p.sep = cs == pos && le-cs == 3 && p.data[cs] == '-' && p.data[cs+1] == '-' && p.data[cs+2] == '-'
		return
	}
}

func (p *fastYAML) advance() { p.load(p.le+1, p.line+1) }

// ended reports that the current block cannot go on: the input left the
// subset, or the document or the input ended.
func (p *fastYAML) ended() bool { return p.bad || p.eof || p.sep }

func (p *fastYAML) node(kind yaml.Kind, tag, value string, line, col int) *yaml.Node {
	if p.ni < len(p.nodes) && p.nj == len(p.nodes[p.ni]) {
		p.ni, p.nj = p.ni+1, 0
	}
	if p.ni == len(p.nodes) {
		p.nodes = append(p.nodes, make([]yaml.Node, 64))
	}
	n := &p.nodes[p.ni][p.nj]
	p.nj++
	*n = yaml.Node{Kind: kind, Tag: tag, Value: value, Line: line, Column: col}
	return n
}

// content returns an empty Content for a node, with room for size.
func (p *fastYAML) content(size int) []*yaml.Node {
	if p.pi < len(p.ptrs) && len(p.ptrs[p.pi])-p.pj < size {
		p.pi, p.pj = p.pi+1, 0
	}
	if p.pi == len(p.ptrs) {
		p.ptrs = append(p.ptrs, make([]*yaml.Node, 256))
	}
	c := p.ptrs[p.pi][p.pj : p.pj : p.pj+size]
	p.pj += size
	return c
}

// document returns the next document, nil at the end of the input.
func (p *fastYAML) document() (doc *yaml.Node, offset int, ok bool) {
	if p.eof {
		return nil, 0, true
	}
	if !p.reuse {
		p.nodes, p.ptrs = nil, nil
	}
	p.ni, p.nj, p.pi, p.pj = 0, 0, 0, 0
	doc = p.node(yaml.DocumentNode, "", "", p.line, 1)
	offset = p.ls
	if p.sep {
		p.advance()
	}
	if p.ended() || p.ind != 0 || p.isItem() {
		return nil, 0, false // empty, indented, or a list: the decoder says what it is
	}
	doc.Content = []*yaml.Node{p.mapping(0)}
	if p.bad || !(p.eof || p.sep) {
		return nil, 0, false
	}
	return doc, offset, true
}

func (p *fastYAML) isItem() bool {
	return p.data[p.cs] == '-' && (p.cs+1 == p.le || p.data[p.cs+1] == ' ')
}

// block reads the block at the current line, deeper than its parent.
func (p *fastYAML) block() *yaml.Node {
	if p.isItem() {
		return p.sequence(p.ind)
	}
	return p.mapping(p.ind)
}

// maxDepth bounds the nesting fastYAML reads, well below the decoder's
// limit (10,000), so that the decoder reports a document nested too deep.
const maxDepth = 100

// mapping reads the mapping whose keys are at column col, from the current
// line on.
func (p *fastYAML) mapping(col int) *yaml.Node {
	m := p.node(yaml.MappingNode, "!!map", "", p.line, col+1)
	if p.depth++; p.depth > maxDepth {
		p.bad = true
		return m
	}
	defer func() { p.depth-- }()
	m.Content = p.content(8)
	for {
		colon := p.keyEnd(p.cs)
		if colon < 0 {
			p.bad = true
			return m
		}
		kw := p.intern(p.data[p.cs:colon])
		k := p.node(yaml.ScalarNode, kw.tag, kw.s, p.line, col+1)
		v := colon + 1
		for v < p.le && p.data[v] == ' ' {
			v++
		}
		var val *yaml.Node
		if v < p.le {
			val = p.scalar(v)
			p.advance()
			if !p.ended() && p.ind > col {
				p.bad = true // a continued scalar, or an error
			}
		} else {
			p.advance()
			switch {
			case p.ended():
				p.bad = true // an empty value
			case p.ind > col:
				val = p.block()
			case p.ind == col && p.isItem():
				val = p.sequence(col)
			default:
				p.bad = true // an empty value
			}
		}
		if p.bad {
			return m
		}
		m.Content = append(m.Content, k, val)
		if p.eof || p.sep || p.ind < col {
			return m
		}
		if p.ind > col || p.isItem() {
			p.bad = true
			return m
		}
	}
}

// sequence reads the list whose "-" are at column col, from the current line on.
func (p *fastYAML) sequence(col int) *yaml.Node {
	s := p.node(yaml.SequenceNode, "!!seq", "", p.line, col+1)
	if p.depth++; p.depth > maxDepth {
		p.bad = true
		return s
	}
	defer func() { p.depth-- }()
	s.Content = p.content(2)
	for {
		j := p.cs + 1
		for j < p.le && p.data[j] == ' ' {
			j++
		}
		if j == p.cs+1 || j == p.le || p.data[j] == '-' {
			p.bad = true // "-" alone (a block below or null), or a list in a list
			return s
		}
		var item *yaml.Node
		if p.keyEnd(j) >= 0 {
			p.cs, p.ind = j, col+(j-p.cs)
			item = p.mapping(p.ind)
		} else {
			item = p.scalar(j)
			p.advance()
			if !p.ended() && p.ind > col {
				p.bad = true
			}
		}
		if p.bad {
			return s
		}
		s.Content = append(s.Content, item)
		if p.eof || p.sep || p.ind < col || (p.ind == col && !p.isItem()) {
			return s
		}
		if p.ind > col {
			p.bad = true
			return s
		}
	}
}

// keyEnd returns where the colon after a plain key starting at i is, if
// the line has one there followed by a space or the end of the line.
func (p *fastYAML) keyEnd(i int) int {
	d := p.data
	if i >= p.le || !isWordByte(d[i]) {
		return -1
	}
	start := i
	for i++; i < p.le; i++ {
		c := d[i]
		if isWordByte(c) || c == '.' || c == '/' || c == '-' {
			continue
		}
		if c == ':' && (i+1 == p.le || d[i+1] == ' ') && i-start <= maxKey {
			return i
		}
		return -1
	}
	return -1
}

// maxKey bounds a key's length: the YAML scanner refuses a key of over
// 1024 characters.
const maxKey = 1000

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// scalar reads the value from i to the end of the line.
func (p *fastYAML) scalar(i int) *yaml.Node {
	d := p.data
	line, col := p.line, i-p.ls+1
	if q := d[i]; q == '"' || q == '\'' {
		j := i + 1
		for j < p.le && d[j] != q {
			if d[j] < 0x20 || d[j] > 0x7e || d[j] == '\\' {
				p.bad = true
				return nil
			}
			j++
		}
		end := j + 1
		for end < p.le && d[end] == ' ' {
			end++
		}
		if j >= p.le || end != p.le {
			p.bad = true // no closing quote on the line, or more after it
			return nil
		}
		v := string(d[i+1 : j])
		if j-i-1 <= maxInterned {
			v = p.intern(d[i+1 : j]).s
		}
		n := p.node(yaml.ScalarNode, "!!str", v, line, col)
		n.Style = yaml.DoubleQuotedStyle
		if q == '\'' {
			n.Style = yaml.SingleQuotedStyle
		}
		return n
	}
	c := d[i]
	if !(isWordByte(c) || c == '.' || c == '/' || c == '+' || c == '-' && i+1 < p.le && (isWordByte(d[i+1]) || d[i+1] == '.')) {
		p.bad = true // an indicator, or what this reader does not know
		return nil
	}
	end := i
	for j := i; j < p.le; j++ {
		c := d[j]
		switch {
		case c == ' ':
			continue
		case c < 0x20 || c > 0x7e || c == '#':
			p.bad = true
			return nil
		case c == ':' && (j+1 == p.le || d[j+1] == ' '):
			p.bad = true // a mapping on the line
			return nil
		}
		end = j + 1
	}
	if end-i <= maxInterned {
		w := p.intern(d[i:end])
		return p.node(yaml.ScalarNode, w.tag, w.s, line, col)
	}
	v := string(d[i:end])
	return p.node(yaml.ScalarNode, plainTag(v), v, line, col)
}

// maxInterned bounds the values interned: kinds, versions, meshes, ports
// and keys repeat in every document; certificates do not.
const maxInterned = 24

// word is an interned string and the tag it resolves to as a plain scalar.
type word struct{ s, tag string }

func (p *fastYAML) intern(b []byte) word {
	if w, ok := p.words[string(b)]; ok {
		return w
	}
	s := string(b)
	w := word{s, plainTag(s)}
	p.words[s] = w
	return w
}

// plainTag is the tag the decoder resolves a plain scalar to: its own
// resolution (through ShortTag), except for what starts with none of the
// bytes its resolver takes as a hint of another type: those are strings.
func plainTag(v string) string {
	if v != "" && !resolveHint[v[0]] {
		return "!!str"
	}
	n := yaml.Node{Kind: yaml.ScalarNode, Value: v}
	return n.ShortTag()
}

// resolveHint holds the first bytes for which the decoder's resolver
// (resolve.go's resolveTable) looks further than "a string".
var resolveHint = func() (t [256]bool) {
	for _, c := range []byte("+-0123456789yYnNtTfFoO~<.") {
		t[c] = true
	}
	return t
}()
