package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// machineFacts is the report's first table: what the numbers were measured on.
func machineFacts(o options) string {
	var b strings.Builder
	b.WriteString("## Machine\n\n| fact | value |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, oneLine(v)) }
	row("CPU model", cpuModel())
	row("cores (online)", fmt.Sprint(runtime.NumCPU()))
	row("kernel", firstLine(cmdOut("uname", "-sr")))
	row("memory", memTotal())
	row("load average at start", firstLine(readFile("/proc/loadavg")))
	row("fs.inotify.max_user_instances", orNA(strings.TrimSpace(readFile("/proc/sys/fs/inotify/max_user_instances"))))
	if o.envoy != "" {
		row("Envoy", envoyVersion(o.envoy))
	} else {
		row("Envoy", "not available (make envoy)")
	}
	row("Go (harness)", runtime.Version())
	row("Go (toolchain)", firstLine(cmdOut(o.gobin, "version")))
	row("wrk", orNA(firstLine(cmdOut("wrk", "-v"))))
	row("h2load", orNA(firstLine(cmdOut("h2load", "--version"))))
	rev := strings.TrimSpace(cmdOut("git", "-C", o.repo, "rev-parse", "--short", "HEAD"))
	if st := strings.TrimSpace(cmdOut("git", "-C", o.repo, "status", "--porcelain", "--untracked-files=no")); st != "" && rev != "" {
		rev += " (with uncommitted changes)"
	}
	row("meshext commit", orNA(rev))
	b.WriteString("\nLimits: a shared VM, everything on loopback; client, Envoy and upstream compete for the same cores, so absolute figures are low and noisy. The ratios between variants measured in the same run are the point.\n\n")
	return b.String()
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb float64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kb); err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func envoyVersion(envoy string) string {
	out, _ := runBounded(20*time.Second, envoy, "--version")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "version:") {
			return strings.TrimSpace(l[strings.Index(l, "version:")+len("version:"):])
		}
	}
	return orNA(firstLine(out))
}

func cmdOut(name string, args ...string) string {
	out, err := runBounded(20*time.Second, name, args...)
	if err != nil && out == "" {
		return ""
	}
	return out
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" {
			return t
		}
	}
	return ""
}

func orNA(s string) string {
	if s == "" {
		return "not available"
	}
	return s
}
