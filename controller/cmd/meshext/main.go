// Command meshext is the MeshExternalService controller and its CLI.
// Each subcommand lives in its own cmd_*.go file and registers itself in init().
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

type command struct {
	name    string
	summary string
	// run gets the arguments after the subcommand name and returns the exit code.
	run func(args []string) int
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("meshext: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "meshext: Kuma MeshExternalService on Envoy: hostnames, VIPs, TLS origination, egress authorization.")
	fmt.Fprintln(w, "\nUsage: meshext COMMAND [flags] [args]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'meshext COMMAND --help' for a command's flags.")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "-h", "--help", "help":
		usage(os.Stdout)
		return
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "meshext: unknown command %q\n\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}
