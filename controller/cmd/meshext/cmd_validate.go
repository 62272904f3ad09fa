package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/meshext/meshext/controller/policy"
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

func init() {
	register(&command{name: "validate", summary: "check resource files with Kuma's rules; one line per violation", run: runValidate})
}

func runValidate(args []string) int {
	return validateMain(args, os.Stdout, os.Stderr)
}

// validateMain is runValidate with its outputs, for tests.
func validateMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	zone := fs.String("zone", "default", "local zone name: computed kuma.io/zone labels, and the value a zone-origin resource's kuma.io/zone label must have")
	skipDefaults := fs.String("skip-default-policies", "", skipDefaultsUsage)
	maxFileSize := addMaxFileSize(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: meshext validate [--zone NAME] PATH...

Reads every *.yaml/*.yml file under the given files and directories (Kuma
MeshExternalService, HostnameGenerator, MeshTrafficPermission, Dataplane,
Mesh, Secret; Kubernetes or universal style, several documents per file) and
checks them with Kuma v2.14's rules plus meshext's own.

Exit status: 0 when everything is valid (a summary goes to stdout, with the
default policies Kuma would add); 1 when
there are violations, printed to stdout one per line as
  FILE:LINE: KIND MESH/NAME: FIELD.PATH: message
(YAML that cannot be parsed gives FILE:LINE: message); 2 on usage errors or
unreadable paths.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	paths := fs.Args()
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "meshext validate: at least one PATH is required")
		fs.Usage()
		return 2
	}
	skip, err := parseSkipDefaults(*skipDefaults)
	if err != nil {
		fmt.Fprintf(stderr, "meshext validate: %v\n", err)
		return 2
	}
	set, loadProblems, err := resource.Load(paths, resource.Options{Zone: *zone, MaxFileSize: *maxFileSize})
	if err != nil {
		fmt.Fprintf(stderr, "meshext validate: %v\n", err)
		return 2
	}
	valid, problems := validate.WithOptions(set, validate.Options{Zone: *zone})
	all := append(loadProblems, withoutShadowed(problems, loadProblems)...)
	total := len(set.Objects())
	if len(all) == 0 {
		fmt.Fprintf(stdout, "%s: %d resources valid\n", strings.Join(paths, " "), total)
		var names []string
		for _, d := range policy.Resolve(valid, policy.Options{Zone: *zone, SkipDefaults: skip}).Defaults() {
			names = append(names, string(d.GetMeta().Kind)+" "+d.GetMeta().Mesh+"/"+d.GetMeta().Name)
		}
		if len(names) > 0 {
			fmt.Fprintf(stdout, "plus Kuma's default policies: %s\n", strings.Join(names, ", "))
		}
		return 0
	}
	sortByFileAndLine(all, set.Files)
	for _, p := range all {
		fmt.Fprintln(stdout, p.Error())
	}
	fmt.Fprintf(stderr, "meshext validate: %d problems; %d of %d resources valid\n", len(all), len(valid.Objects()), total)
	return 1
}

// sortByFileAndLine orders problems like compiler output: by file (in the
// order read), then line; problems on one line keep the validator's order.
func sortByFileAndLine(problems []*resource.FieldError, files []string) {
	rank := map[string]int{}
	for i, f := range files {
		rank[f] = i
	}
	sort.SliceStable(problems, func(i, j int) bool {
		a, b := problems[i], problems[j]
		ra, oka := rank[a.File]
		rb, okb := rank[b.File]
		if oka != okb {
			return !oka // unreadable files (not in files) first
		}
		if ra != rb {
			return ra < rb
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})
}

// withoutShadowed drops validation problems on a field the parser already
// reported (a port that failed to decode is also "not a valid port").
func withoutShadowed(problems, parseProblems []*resource.FieldError) []*resource.FieldError {
	type key struct {
		file, field string
		line        int
	}
	seen := map[key]bool{}
	for _, p := range parseProblems {
		seen[key{p.File, p.Field, p.Line}] = true
	}
	var out []*resource.FieldError
	for _, p := range problems {
		if !seen[key{p.File, p.Field, p.Line}] {
			out = append(out, p)
		}
	}
	return out
}
