#!/usr/bin/env bash
# The benchmark harness: ./build/bench.sh full|quick
# full  → bench/results/<date>-<host>.md + latest.md (the published report, < 10 min on 2 cores)
# quick → bench/results/<date>-<host>-quick.md + latest-quick.md (CI smoke, < 2 min)
# `make bench` / `make bench-quick` build bin/meshext, Envoy, tools and the plugin first;
# sections whose pieces are missing report "not available: <why>" instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-full}"
case "$mode" in full|quick) ;; *) echo "usage: $0 full|quick" >&2; exit 2 ;; esac
GO="${GO:-go}"

# Load generators from Debian; installed when missing and we are root.
missing=""
command -v wrk >/dev/null || missing="$missing wrk"
command -v h2load >/dev/null || missing="$missing nghttp2-client"
if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "bench: installing:$missing" >&2
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	else
		echo "bench: missing$missing (apt-get install$missing); those tables will say not available" >&2
	fi
fi

# Every Envoy takes several inotify instances; with other Envoys on the host
# the per-user limit (default 128) can run out. The harness retries; say why.
if [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 512 ]; then
	echo "bench: fs.inotify.max_user_instances=$(cat /proc/sys/fs/inotify/max_user_instances); on a busy host Envoys may wait for one (sysctl -w fs.inotify.max_user_instances=1024 avoids it)" >&2
fi

mkdir -p bin
"$GO" build -o bin/meshext-bench ./bench/cmd/meshext-bench
# The control-plane stage benchmark imports controller packages that may be
# mid-change; a build failure only disables its table.
rm -f bin/meshext-cpbench
if ! "$GO" build -o bin/meshext-cpbench ./bench/cmd/meshext-cpbench 2>bin/meshext-cpbench.build.log; then
	echo "bench: bench/cmd/meshext-cpbench does not build; see bin/meshext-cpbench.build.log" >&2
fi

envoy="${ENVOY_BIN:-}"
if [ -z "$envoy" ]; then envoy="$(make -s envoy 2>/dev/null || true)"; fi

exec ./bin/meshext-bench -mode "$mode" -envoy "$envoy" -meshext bin/meshext -plugin bin/libmeshext.so \
	-cpbench bin/meshext-cpbench -go "$GO" -out bench/results
