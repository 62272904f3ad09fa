#!/usr/bin/env bash
# Instructions per request of the forward proxy's Envoys under callgrind:
# no filter, the Go filter, native RBAC and the C reference module, from the
# configs a full `make bench` keeps in its work directory (forward-proxy/).
# Deterministic where the report's throughput is not: the worker thread's
# count is the per-request path alone (Envoy + filter + cgo), independent of
# the host's speed; the all-threads count adds the Go runtime's threads,
# whose timed work grows with valgrind's ~50x wall time (an upper bound).
#
#   bench/callgrind-forward-proxy.sh /tmp/meshext-bench-NNN [requests]
#
# Needs valgrind, h2load and bin/meshext-bench (make bench builds it).
set -euo pipefail
work="${1:?usage: $0 WORK_DIR [requests]}"
n="${2:-2000}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
envoy="${ENVOY_BIN:-$repo/.tools/envoy/envoy/_bin/envoy}"
fp="$work/forward-proxy"
out="$(mktemp -d /tmp/meshext-fp-callgrind-XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
for tool in valgrind callgrind_control h2load python3; do
	command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

# CompareRPS starts its Envoys in this order (plugin/envoytest/compare.go):
# 0 no filter, 1 Go filter, 2 empty Go module, 3 native RBAC, 4 C reference.
upstream_port=19199
declare -A name=([0]="no filter" [1]="Go filter" [3]="native RBAC" [4]="C reference")
declare -A moddir=([0]="$repo/bin" [1]="$repo/bin" [3]="$repo/bin" [4]="$fp/cref")
"$repo/bin/meshext-bench" upstream -kind http -addr 127.0.0.1:$upstream_port >"$out/upstream.log" 2>&1 &

for i in 0 1 3 4; do
	port=$((19100 + i))
	mkdir -p "$out/e$i/lds"
	# The kept configs listen on an ephemeral port and point at the run's
	# upstream: give them fixed ones.
	python3 - "$fp/envoy-$i" "$out/e$i" "$port" "$upstream_port" <<'PY'
import json, sys
src, dst, port, up = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
b = json.load(open(src + "/bootstrap.json"))
b["dynamic_resources"]["lds_config"]["path_config_source"] = {
    "path": dst + "/lds/lds.json", "watched_directory": {"path": dst + "/lds"}}
ep = b["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
ep["endpoint"]["address"]["socket_address"]["port_value"] = up
json.dump(b, open(dst + "/bootstrap.json", "w"))
l = json.load(open(src + "/lds/lds.json"))
l["resources"][0]["address"]["socket_address"]["port_value"] = port
json.dump(l, open(dst + "/lds/lds.json", "w"))
PY
	cg="$out/cg.$i"
	ENVOY_DYNAMIC_MODULES_SEARCH_PATH="${moddir[$i]}" GODEBUG=cgocheck=0 \
		valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file="$cg" \
		"$envoy" -c "$out/e$i/bootstrap.json" --concurrency 1 -l error --disable-hot-restart >"$out/e$i.log" 2>&1 &
	pid=$!
	# The request CompareRPS sends: an allowed MES by authority, and the
	# cluster header the no-filter flavor needs.
	probe=(h2load --h1 -t1 -c1 -H ":authority:svc-500.extsvc.mesh.local" -H "x-meshext-cluster:mes_http")
	load=("${probe[@]}" -c4)
	ready=""
	for _ in $(seq 1 300); do
		# Output captured first: grep -q would end the pipe early, which pipefail reports.
		if [[ "$("${probe[@]}" -n 1 "http://127.0.0.1:$port/" 2>/dev/null || true)" == *"1 succeeded"* ]]; then ready=1; break; fi
		sleep 0.5
	done
	[ -n "$ready" ] || { echo "${name[$i]}: Envoy never served (log: $out/e$i.log)" >&2; exit 1; }
	"${load[@]}" -n 500 "http://127.0.0.1:$port/" >/dev/null
	callgrind_control -i on $pid >/dev/null 2>&1
	res="$("${load[@]}" -n "$n" "http://127.0.0.1:$port/")"
	[[ "$res" == *"$n succeeded"* ]] || { echo "${name[$i]}: not every request succeeded: $res" >&2; exit 1; }
	callgrind_control -i off $pid >/dev/null 2>&1
	callgrind_control -d $pid >/dev/null 2>&1
	kill $pid; wait $pid 2>/dev/null || true
	python3 - "$cg" "$n" "${name[$i]}" >>"$out/results.txt" <<'PY'
import glob, sys
cg, n, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = [int(l.split()[1]) for f in glob.glob(cg + ".1-*") for l in open(f) if l.startswith("totals:")]
print(f"{name}\t{sum(t) / n:.0f}\t{max(t) / n:.0f}")
PY
done
python3 - "$out/results.txt" "$n" <<'PY'
import sys
rows = {l.split("\t")[0]: (float(l.split("\t")[1]), float(l.split("\t")[2])) for l in open(sys.argv[1])}
print(f"| Envoy (forward proxy, {sys.argv[2]} requests) | instructions per request, all threads | worker thread |")
print("|---|---|---|")
for k, (a, w) in rows.items():
    print(f"| {k} | {a:.0f} | {w:.0f} |")
g = rows["Go filter"]
for k in ("C reference", "native RBAC"):
    print(f"| Go filter / {k} | {g[0] / rows[k][0]:.3f} | {g[1] / rows[k][1]:.3f} |")
PY
