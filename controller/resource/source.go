package resource

import (
	"bytes"
	"fmt"
	"sync"
	"weak"

	"go.yaml.in/yaml/v3"
)

// docSource is the text of one YAML document, kept so that its node tree can
// be rebuilt when an error needs a line. Parsed resources do not keep their
// trees: a yaml.Node costs about 40 times the text it was read from, which
// would make memory grow with that multiple of the input. The text is a
// slice of the file's bytes, so keeping it costs nothing extra.
type docSource struct {
	text []byte
	line int // the file line of text's first line

	mu   sync.Mutex
	tree weak.Pointer[yaml.Node] // the last rebuild, while something still uses it
}

// root returns the document node with file line numbers, rebuilt when the
// last one has been collected; nil if the text does not parse.
func (d *docSource) root() *yaml.Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.tree.Value(); n != nil {
		return n
	}
	doc := new(yaml.Node)
	if err := yaml.NewDecoder(bytes.NewReader(d.text)).Decode(doc); err != nil {
		return nil
	}
	shiftLines(doc, d.line-1)
	d.tree = weak.Make(doc)
	return doc
}

// shiftLines adds delta to the line of every node of the tree (aliases are
// not followed: their targets are in the tree themselves).
func shiftLines(n *yaml.Node, delta int) {
	n.Line += delta
	for _, c := range n.Content {
		shiftLines(c, delta)
	}
}

// lineCursor finds where lines start in a file's bytes, counting line breaks
// as the YAML reader does (LF, CR, CRLF, NEL, LS, PS). Lines are asked for in
// increasing order, so a whole file is scanned once.
type lineCursor struct {
	data []byte
	pos  int // where line starts
	line int
}

func newLineCursor(data []byte) *lineCursor { return &lineCursor{data: data, line: 1} }

// offset returns the byte offset where line starts (len(data) past the end).
func (c *lineCursor) offset(line int) int {
	for c.line < line {
		i := bytes.IndexAny(c.data[c.pos:], "\r\n\u0085\u2028\u2029")
		if i < 0 {
			c.pos, c.line = len(c.data), line
			break
		}
		c.pos += i
		switch b := c.data[c.pos:]; {
		case b[0] == '\r' && len(b) > 1 && b[1] == '\n':
			c.pos += 2
		case b[0] == '\r' || b[0] == '\n':
			c.pos++
		case b[0] == 0xC2: // NEL
			c.pos += 2
		default: // LS, PS
			c.pos += 3
		}
		c.line++
	}
	return c.pos
}

// utf16 reports a UTF-16 byte order mark: the reader converts such input,
// so byte offsets do not follow its lines, and trees are kept instead.
func utf16(data []byte) bool {
	return len(data) >= 2 && (data[0] == 0xFE && data[1] == 0xFF || data[0] == 0xFF && data[1] == 0xFE)
}

// Alias expansion budget of a file: decoding copies what an alias points to,
// so a small file of nested aliases ("billion laughs") can decode to
// billions of values. The YAML decoder stops one decode at about 400,000
// expanded values, but each document is a decode of its own; this bounds
// the file: expanded values at most aliasFactor times the values written
// plus aliasAllowance.
const (
	aliasFactor    = 4
	aliasAllowance = 100_000
)

// aliasBudget tracks the values written and expanded in a file so far.
type aliasBudget struct{ written, expanded int64 }

// spend adds one document; it returns why the document may not be decoded.
func (b *aliasBudget) spend(doc *yaml.Node) string {
	written, expanded, cyclic := countNodes(doc)
	if cyclic {
		return "an alias refers to a node that contains it"
	}
	w, e := b.written+written, b.expanded+expanded
	if e > aliasFactor*w+aliasAllowance {
		return fmt.Sprintf("YAML aliases expand this document to %d values; a file may expand to at most %d times the %d it holds, plus %d",
			expanded, aliasFactor, w, aliasAllowance)
	}
	b.written, b.expanded = w, e
	return ""
}

// countNodes returns how many nodes the tree has as written and as decoded
// (every alias replaced by a copy of what it points to, saturating at
// maxCount), and whether an alias is inside what it points to.
func countNodes(root *yaml.Node) (written, expanded int64, cyclic bool) {
	const maxCount = 1 << 50
	var memo map[*yaml.Node]int64 // anchored nodes, -1 while being counted
	var walk func(n *yaml.Node) int64
	walk = func(n *yaml.Node) int64 {
		if n.Kind == yaml.AliasNode {
			written++
			t := n.Alias
			if t == nil {
				return 1
			}
			if c, ok := memo[t]; ok {
				if c < 0 {
					cyclic = true
					return 1
				}
				return c
			}
			// Counted where it is written; here only its expansion is needed.
			saved := written
			c := walk(t)
			written = saved
			return c
		}
		written++
		if n.Anchor != "" {
			if memo == nil {
				memo = map[*yaml.Node]int64{}
			}
			if c, ok := memo[n]; ok && c >= 0 {
				return c
			}
			memo[n] = -1
		}
		total := int64(1)
		for _, c := range n.Content {
			total = min(total+walk(c), maxCount)
		}
		if n.Anchor != "" {
			memo[n] = total
		}
		return total
	}
	expanded = walk(root)
	return written, expanded, cyclic
}
