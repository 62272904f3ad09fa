package cthread

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Procs is the GOMAXPROCS a Go filter wants in an Envoy started with args:
// one P per worker plus one. The spare P matters when a worker is not
// saturated: sysmon leaves a P in a C call alone only while another P is
// idle, so with exactly one P per worker every idle gap of a worker
// (20 µs and up in epoll_wait) costs a P hand-off and a thread wake-up.
// Envoy's default worker count is one per CPU (cpus).
func Procs(args []string, cpus int) int {
	workers := cpus
	for i, a := range args {
		v, ok := "", false
		switch {
		case a == "--concurrency" && i+1 < len(args):
			v, ok = args[i+1], true
		case strings.HasPrefix(a, "--concurrency="):
			v, ok = strings.TrimPrefix(a, "--concurrency="), true
		}
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			workers = n
		}
	}
	if workers < 1 {
		workers = 1
	}
	return workers + 1
}

// SetProcs sets GOMAXPROCS to Procs of this process's command line,
// unless the GOMAXPROCS environment variable decides. Call it from the
// shared library's init.
func SetProcs() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	raw, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		return
	}
	args := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	runtime.GOMAXPROCS(Procs(args, runtime.NumCPU()))
}
