package main

import (
	"os"

	"github.com/meshext/meshext/bpf"
)

func init() {
	register(&command{
		name:    "redirect",
		summary: "attach|detach|status the eBPF transparent redirect of a workload cgroup to Envoy",
		run:     func(args []string) int { return bpf.RunCLI(args, os.Stdout, os.Stderr) },
	})
}
