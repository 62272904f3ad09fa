package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshext/meshext/e2e/envoyproc"
	"github.com/meshext/meshext/plugin/envoytest"
)

// The data path's ratios compare two Envoys measured one after the other,
// and on a shared VM the host's speed moves between those runs by more than
// the 3 % the targets allow (the (b')/(b) column shows it). Side by side,
// the two Envoys of a pair are loaded at the same time on the same CPU, so
// whatever the host does, it does to both: the scheduler gives each half of
// the CPU, and each one's throughput is its half divided by its own cost per
// request. Their ratio is then a throughput ratio from the same seconds.

// sbsPairs are the ratios measured side by side, x/y, with their targets
// (0: no target). (b')/(b) is the method's own noise floor. (d)/(c) has no
// target here: a Go runtime in an Envoy that shares its CPU fares worse
// than alone (its threads wake hundreds of times a second on that CPU),
// so side by side overstates (d)'s cost next to the interleaved table's.
var sbsPairs = []struct {
	x, y   int
	target float64
}{
	{vC, vB, 0.97},
	{vCP, vB, 0.97},
	{vD, vC, 0},
	{vB2, vB, 0},
}

// sbsResult is one pair's per-round ratios.
type sbsResult struct {
	thr    []float64 // x's throughput / y's
	cpuReq []float64 // x's Envoy CPU per request / y's
	errs   []string
}

// measureSideBySide runs every pair of sbsPairs side by side in each of
// cfg.rounds rounds, the pairs' order rotating by one each round.
func measureSideBySide(ctx context.Context, cfg dpConfig, proto string, runs []*variantRun) []sbsResult {
	out := make([]sbsResult, len(sbsPairs))
	dirs := [2]string{filepath.Join(cfg.workDir, "sbs-x"), filepath.Join(cfg.workDir, "sbs-y")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			for i := range out {
				out[i].errs = append(out[i].errs, err.Error())
			}
			return out
		}
	}
	for round := 0; round < cfg.rounds && ctx.Err() == nil; round++ {
		for k := range sbsPairs {
			i := (k + round) % len(sbsPairs)
			p := sbsPairs[i]
			x, y := runs[p.x], runs[p.y]
			if x.why != "" || y.why != "" || x.envoy == nil || y.envoy == nil {
				continue
			}
			thr, cpu, err := sideBySideRound(ctx, cfg, proto, [2]*variantRun{x, y}, dirs)
			if err != nil {
				out[i].errs = append(out[i].errs, err.Error())
				continue
			}
			out[i].thr = append(out[i].thr, thr)
			out[i].cpuReq = append(out[i].cpuReq, cpu)
		}
	}
	return out
}

// sideBySideRound loads both variants at once for cfg.durations and returns
// x/y throughput and x/y Envoy CPU time per request.
func sideBySideRound(ctx context.Context, cfg dpConfig, proto string, xy [2]*variantRun, dirs [2]string) (thr, cpuReq float64, err error) {
	var res [2]loadResult
	var errs [2]error
	cpu, err := envoyproc.Together([2]int{xy[0].envoy.Pid(), xy[1].envoy.Pid()}, func(i int) {
		spec := loadSpec{Proto: proto, Target: xy[i].target, HTTPS: xy[i].https, Conns: cfg.conns[proto], Streams: cfg.streams, Duration: cfg.durations, WorkDir: dirs[i]}
		res[i], errs[i] = runLoad(ctx, spec, cfg.wrk, cfg.h2load)
	})
	if err != nil {
		return 0, 0, err
	}
	var rate, perReq [2]float64
	for i := range xy {
		switch {
		case errs[i] != nil:
			return 0, 0, errs[i]
		case res[i].Requests == 0 || res[i].Errors > 0:
			return 0, 0, fmt.Errorf("side by side: %d requests, %d errors", res[i].Requests, res[i].Errors)
		}
		rate[i] = res[i].RPS
		if proto == "tcp" {
			rate[i] = res[i].MBps
		}
		perReq[i] = float64(cpu[i]) / float64(res[i].Requests)
	}
	if rate[1] == 0 || perReq[1] == 0 {
		return 0, 0, fmt.Errorf("side by side: nothing measured for the second variant")
	}
	return rate[0] / rate[1], perReq[0] / perReq[1], nil
}

// sbsCell is a median ratio and its lowest–highest round.
func sbsCell(v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	lo, _, hi := roundSpread(v)
	if len(v) == 1 {
		return ratio(envoytest.Median(v))
	}
	return fmt.Sprintf("%s (%.3f–%.3f)", ratio(envoytest.Median(v)), lo, hi)
}

// sbsRow is one protocol's row of the side-by-side table: throughput and
// Envoy CPU/req of each pair, with a verdict where the pair has a target.
func sbsRow(name string, res []sbsResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| %s |", name)
	var errs []string
	for i, p := range sbsPairs {
		fmt.Fprintf(&b, " %s |", sbsCell(res[i].thr))
		if p.target > 0 {
			fmt.Fprintf(&b, " %s |", verdict(envoytest.Median(res[i].thr), p.target))
		}
		fmt.Fprintf(&b, " %s |", sbsCell(res[i].cpuReq))
		for _, e := range res[i].errs {
			errs = append(errs, fmt.Sprintf("(%s)/(%s): %s", variants[p.x].key, variants[p.y].key, oneLine(e)))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(&b, " %s |", strings.Join(errs, "; "))
	} else {
		b.WriteString(" 0 |")
	}
	return b.String() + "\n"
}

const sbsHeader = "| protocol | (c)/(b) throughput | target ≥ 0.97 | Envoy CPU/req (c)/(b) | (c+p)/(b) throughput | target ≥ 0.97 | Envoy CPU/req (c+p)/(b) | (d)/(c) throughput (Go runtime sharing the CPU) | Envoy CPU/req (d)/(c) | noise floor: (b')/(b) throughput | Envoy CPU/req (b')/(b) | failed rounds |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
