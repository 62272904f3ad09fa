#!/usr/bin/env bash
# The benchmark harness: ./build/bench.sh full|quick
# full  → bench/results/<date>-<host>.md + latest.md (the published report, about 30 min on 2 cores)
# quick → bench/results/<date>-<host>-quick.md + latest-quick.md (CI smoke, < 2 min)
# `make bench` / `make bench-quick` build bin/meshext, Envoy, tools and the plugin first;
# sections whose pieces are missing report "not available: <why>"; a failing
# Go benchmark or harness binary is reported and makes the script exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-full}"
case "$mode" in full|quick) ;; *) echo "usage: $0 full|quick" >&2; exit 2 ;; esac
GO="${GO:-go}"

# What the comparisons measure with, from Debian; installed when missing and
# we are root (as `make test` / .ci/run do): the load generators, iptables
# and ip (the eBPF redirect against an iptables REDIRECT rule), a C
# compiler (the forward proxy's C reference module) and valgrind (the data
# path's instruction counts). A comparison whose
# piece is still missing says "not available: <why>" (and fails under CI=true).
missing=""
command -v wrk >/dev/null || missing="$missing wrk"
command -v h2load >/dev/null || missing="$missing nghttp2-client"
command -v iptables >/dev/null || missing="$missing iptables"
command -v ip >/dev/null || missing="$missing iproute2"
command -v cc >/dev/null || missing="$missing gcc"
command -v valgrind >/dev/null || missing="$missing valgrind"
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "bench: installing:$missing" >&2
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	else
		echo "bench: missing$missing (apt-get install$missing); those comparisons will say not available" >&2
	fi
fi

# In file mode Envoy takes one inotify instance per SDS file and per route
# file (one per HTTP service under meshext run) plus its CDS/LDS watches; the
# per-user limit (kernel default 128) stops the 10k-service file-mode Envoy
# from starting. As root, raise it for the run (the report says so);
# otherwise warn.
inotify_max="$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)"
if [ "$inotify_max" -gt 0 ] && [ "$inotify_max" -lt 16384 ]; then
	if [ "$(id -u)" = 0 ] && sysctl -q -w fs.inotify.max_user_instances=16384 2>/dev/null; then
		echo "bench: raised fs.inotify.max_user_instances from $inotify_max to 16384 (Envoy needs one per SDS and route file)" >&2
		export MESHEXT_BENCH_INOTIFY_RAISED_FROM="$inotify_max"
	else
		echo "bench: fs.inotify.max_user_instances=$inotify_max; Envoy needs one per SDS and route file, so the 10k-service file-mode runs may fail (sysctl -w fs.inotify.max_user_instances=16384)" >&2
	fi
fi

mkdir -p bin
"$GO" build -o bin/meshext-bench ./bench/cmd/meshext-bench
# The control-plane stage benchmark imports controller packages that may be
# mid-change; if it does not build, the other sections still run and report,
# and the run fails at the end.
rm -f bin/meshext-cpbench
cpbench_broken=""
if ! "$GO" build -o bin/meshext-cpbench ./bench/cmd/meshext-cpbench 2>bin/meshext-cpbench.build.log; then
	echo "bench: bench/cmd/meshext-cpbench does not build; see bin/meshext-cpbench.build.log" >&2
	cpbench_broken=1
fi

envoy="${ENVOY_BIN:-}"
if [ -z "$envoy" ]; then envoy="$(make -s envoy 2>/dev/null || true)"; fi

# meshext-bench writes the report, then exits 1 if a Go benchmark or a
# harness binary failed.
status=0
./bin/meshext-bench -mode "$mode" -envoy "$envoy" -meshext bin/meshext -plugin bin/libmeshext.so \
	-cpbench bin/meshext-cpbench -go "$GO" -out bench/results || status=$?
if [ -n "$cpbench_broken" ] && [ "$status" = 0 ]; then
	echo "bench: failed: bench/cmd/meshext-cpbench does not build" >&2
	status=1
fi
exit "$status"
