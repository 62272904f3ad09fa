package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshext/meshext/controller/model"
	"github.com/meshext/meshext/controller/render"
	"github.com/meshext/meshext/controller/resource"
)

// staticConfig renders one node of a resource directory as a fully static
// Envoy config (render.Render + render.StaticBootstrap, the library behind
// `meshext render`), for the data-path benchmark's variant (c).
func staticConfig(args []string) error {
	fs := flag.NewFlagSet("static", flag.ContinueOnError)
	res := fs.String("res", "", "resource directory")
	node := fs.String("node", "", "Envoy node id (<mesh>.<dataplane>)")
	out := fs.String("out", "", "Envoy config file to write (JSON)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *res == "" || *node == "" || *out == "" {
		return fmt.Errorf("usage: meshext-cpbench static -res DIR -node ID -out FILE")
	}
	set, lerrs, err := resource.Load([]string{*res}, resource.Options{})
	if err != nil {
		return err
	}
	w := model.Build(set, model.Options{})
	var problems []string
	for _, e := range lerrs {
		problems = append(problems, e.Error())
	}
	for _, e := range w.Problems {
		problems = append(problems, e.Error())
	}
	for _, s := range w.Services {
		if s.Broken != "" {
			problems = append(problems, s.Name+": "+s.Broken)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("resources have problems: %s", strings.Join(problems, "; "))
	}
	o, err := render.Render(w, render.Options{})
	if err != nil {
		return err
	}
	n := o.Nodes[*node]
	if n == nil {
		return fmt.Errorf("no node %q in the render output (have %v; warnings %v)", *node, o.NodeIDs(), o.Warnings)
	}
	b, err := render.StaticBootstrap(n, render.BootstrapOptions{})
	if err != nil {
		return err
	}
	data, err := protojson.MarshalOptions{Multiline: true}.Marshal(b)
	if err != nil {
		return err
	}
	// Inline secrets (client keys) are in it: owner-only, like meshext render's bootstrap.json.
	return os.WriteFile(*out, data, 0o600)
}
