package validate

import (
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
)

// Hostname templates are Go text/template, as in Kuma, restricted to a
// language whose every evaluation is small: each node runs at most once (no
// range, no template calls, no variables to accumulate in) and every byte
// produced, by a function or into the output, counts against one budget.
//
// Allowed: text, comments, {{ .Field }} and {{ $.Field }}, string, number
// and bool literals, pipelines, parentheses, if/else, with/else, and the
// functions in TemplateFuncs.
const (
	// MaxTemplateBytes bounds the template text (Kuma's templates are a few
	// dozen bytes; this only bounds parsing).
	MaxTemplateBytes = 4096
	// TemplateBudget bounds the bytes one rendering produces: the output plus
	// every string a function returns. A hostname is at most 253 bytes.
	TemplateBudget = 1024
)

// TemplateFuncs are the functions a hostname template may call: Kuma's label,
// Sprig-style string functions (last argument is the input, so they chain
// in pipelines: {{ .Name | replace "_" "-" }}) and the comparison builtins
// for if/with conditions.
var TemplateFuncs = []string{"label", "lower", "upper", "trimPrefix", "trimSuffix", "replace", "eq", "ne", "not", "and", "or"}

// ErrTemplateBudget is returned when a rendering would exceed TemplateBudget.
var ErrTemplateBudget = fmt.Errorf("rendering needs more than %d bytes (a hostname is at most 253)", TemplateBudget)

// TemplateData is what a hostname template sees (Kuma's names).
type TemplateData struct {
	Name        string
	DisplayName string
	Namespace   string
	Mesh        string
	Zone        string
}

// Template is a parsed, checked hostname template. Render must not be called
// concurrently on one Template.
type Template struct {
	t     *template.Template
	label func(key string) (string, error)
	used  int // bytes produced in the current rendering
}

// ParseTemplate parses text and checks it against the restricted language;
// an error names the first construct that is not allowed and where it is.
func ParseTemplate(text string) (*Template, error) {
	if len(text) > MaxTemplateBytes {
		return nil, fmt.Errorf("template: must be at most %d bytes, is %d", MaxTemplateBytes, len(text))
	}
	tp := &Template{}
	funcs := template.FuncMap{
		"label": func(key string) (string, error) { return tp.label(key) },
		"lower": func(s string) (string, error) { return tp.produce(len(s), func() string { return strings.ToLower(s) }) },
		"upper": func(s string) (string, error) { return tp.produce(len(s), func() string { return strings.ToUpper(s) }) },
		// Trimming returns a substring: nothing new is built.
		"trimPrefix": func(prefix, s string) string { return strings.TrimPrefix(s, prefix) },
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"replace": func(old, new, s string) (string, error) {
			n := len(s) + strings.Count(s, old)*(len(new)-len(old))
			return tp.produce(n, func() string { return strings.ReplaceAll(s, old, new) })
		},
	}
	t, err := template.New("").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, err
	}
	for _, tt := range t.Templates() {
		if tt.Name() != "" {
			return nil, errors.New("template: define and block actions are not supported in hostname templates")
		}
	}
	if t.Tree != nil {
		if err := checkNode(t.Tree, t.Tree.Root); err != nil {
			return nil, err
		}
	}
	tp.t = t
	return tp, nil
}

// Render executes the template with data; label answers the label function
// (nil: every label is missing, Kuma's "label <key> not found").
func (tp *Template) Render(data TemplateData, label func(key string) (string, error)) (string, error) {
	if label == nil {
		label = func(key string) (string, error) { return "", fmt.Errorf("label %s not found", key) }
	}
	tp.label, tp.used = label, 0
	w := &budgetWriter{tp: tp}
	if err := tp.t.Execute(w, data); err != nil {
		return "", err
	}
	return w.b.String(), nil
}

// produce charges n bytes to the budget before build allocates them.
func (tp *Template) produce(n int, build func() string) (string, error) {
	if n < 0 || n > TemplateBudget-tp.used {
		return "", ErrTemplateBudget
	}
	tp.used += n
	return build(), nil
}

// budgetWriter is the output; it stops at the budget, so even printing a
// huge label value copies at most the budget.
type budgetWriter struct {
	tp *Template
	b  strings.Builder
}

func (w *budgetWriter) Write(p []byte) (int, error) {
	if len(p) > TemplateBudget-w.tp.used {
		return 0, ErrTemplateBudget
	}
	w.tp.used += len(p)
	return w.b.Write(p)
}

var allowedFunc = func() map[string]bool {
	m := map[string]bool{}
	for _, f := range TemplateFuncs {
		m[f] = true
	}
	return m
}()

// checkNode walks the parse tree and refuses every node type and function
// outside the restricted language.
func checkNode(tree *parse.Tree, n parse.Node) error {
	refuse := func(what string) error {
		loc, _ := tree.ErrorContext(n)
		return fmt.Errorf("template: %s: %s is not supported in hostname templates", loc, what)
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNode(tree, c); err != nil {
				return err
			}
		}
	case *parse.TextNode, *parse.CommentNode, *parse.FieldNode, *parse.DotNode,
		*parse.StringNode, *parse.NumberNode, *parse.BoolNode:
	case *parse.ActionNode:
		return checkNode(tree, n.Pipe)
	case *parse.IfNode:
		return checkBranch(tree, &n.BranchNode)
	case *parse.WithNode:
		return checkBranch(tree, &n.BranchNode)
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		if len(n.Decl) > 0 {
			return refuse("a variable")
		}
		for _, c := range n.Cmds {
			if err := checkNode(tree, c); err != nil {
				return err
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := checkNode(tree, a); err != nil {
				return err
			}
		}
	case *parse.IdentifierNode:
		if !allowedFunc[n.Ident] {
			loc, _ := tree.ErrorContext(n)
			return fmt.Errorf("template: %s: function %q is not allowed in hostname templates (allowed: %s)", loc, n.Ident, strings.Join(TemplateFuncs, ", "))
		}
	case *parse.VariableNode:
		if n.Ident[0] != "$" { // $ is the data itself: {{ $.Name }} is field access
			return refuse("a variable")
		}
	case *parse.RangeNode:
		return refuse("range")
	case *parse.TemplateNode:
		return refuse("a template call")
	case *parse.ChainNode:
		return refuse("a field of an expression")
	default:
		return refuse(n.String())
	}
	return nil
}

func checkBranch(tree *parse.Tree, b *parse.BranchNode) error {
	for _, n := range []parse.Node{b.Pipe, b.List, b.ElseList} {
		if err := checkNode(tree, n); err != nil {
			return err
		}
	}
	return nil
}
