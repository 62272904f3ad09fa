#!/usr/bin/env bash
# What the settings that separate (c) from (b) cost, in instructions per
# request under callgrind: the hand-written (b) configs a full `make bench`
# keeps (http-b-handwritten.yaml, grpc-b-handwritten.yaml), each as is, with
# the route retry policy of Kuma's default MeshRetry (mesh-retry-all, which
# (c) carries), and without Envoy's x-request-id (which (c) no longer makes
# up without a MeshAccessLog). Counts the worker thread, which does not
# depend on the host's speed; 500 requests of warm-up, then [requests].
#
#   bench/callgrind-defaults.sh /tmp/meshext-bench-NNN [requests]
#
# Needs valgrind, h2load and bin/meshext-bench (make bench builds it).
set -euo pipefail
work="${1:?usage: $0 WORK_DIR [requests]}"
n="${2:-2000}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
envoy="${ENVOY_BIN:-$repo/.tools/envoy/envoy/_bin/envoy}"
out="$(mktemp -d /tmp/meshext-defaults-callgrind-XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
for tool in valgrind callgrind_control h2load python3 taskset; do
	command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
last_cpu=$(($(nproc) - 1))

# mesh-retry-all's route retry policy as meshext renders it (see the kept
# */out/*/lds.json of (c)); the gRPC one differs only in retry_on.
retry_http='{retry_on: "gateway-error,connect-failure,refused-stream", num_retries: 5, per_try_timeout: 16s, retry_back_off: {base_interval: 0.025s, max_interval: 0.250s}}'
retry_grpc='{retry_on: "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable", num_retries: 5, per_try_timeout: 16s, retry_back_off: {base_interval: 0.025s, max_interval: 0.250s}}'

for proto in http grpc; do
	src="$work/$proto-b-handwritten.yaml"
	[ -f "$src" ] || { echo "missing $src (run a full make bench first)" >&2; exit 1; }
	declare -A off=([http]=0 [grpc]=1)
	up_port=$((19400 + off[$proto])) listen_port=$((19410 + off[$proto]))
	"$repo/bin/meshext-bench" upstream -kind "$proto" -addr 127.0.0.1:$up_port >"$out/upstream-$proto.log" 2>&1 &
	up_pid=$!
	sleep 0.5
	kill -0 $up_pid 2>/dev/null || { echo "$proto upstream did not start:" >&2; cat "$out/upstream-$proto.log" >&2; exit 1; }
	retry=$retry_http
	[ "$proto" = grpc ] && retry=$retry_grpc
	# The kept config's first line names its ports: "... on 127.0.0.1:L -> 127.0.0.1:U".
	read -r listen up < <(head -1 "$src" | sed -E 's/.* on 127\.0\.0\.1:([0-9]+) -> 127\.0\.0\.1:([0-9]+).*/\1 \2/')
	base="$out/$proto-b.yaml"
	sed -e "s/port_value: $listen}/port_value: $listen_port}/" -e "s/port_value: $up}/port_value: $up_port}/" "$src" >"$base"
	sed -e "s/route: {cluster: upstream}/route: {cluster: upstream, retry_policy: $retry}/" "$base" >"$out/$proto-b-retry.yaml"
	sed -e "s/codec_type: AUTO/codec_type: AUTO\n          generate_request_id: false/" "$base" >"$out/$proto-b-norequestid.yaml"
	grep -q retry_policy "$out/$proto-b-retry.yaml" && grep -q generate_request_id "$out/$proto-b-norequestid.yaml" ||
		{ echo "$src: not the shape this script edits" >&2; exit 1; }

	if [ "$proto" = grpc ]; then
		load=(h2load -t1 -c4 -m8 -d "$work/grpc-health-check.bin" -H 'content-type: application/grpc' -H 'te: trailers')
		url="http://127.0.0.1:$listen_port/grpc.health.v1.Health/Check"
	else
		load=(h2load --h1 -t1 -c4)
		url="http://127.0.0.1:$listen_port/"
	fi
	for variant in b b-retry b-norequestid; do
		cg="$out/cg.$proto.$variant"
		taskset -c "$last_cpu" valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes --callgrind-out-file="$cg" \
			"$envoy" -c "$out/$proto-$variant.yaml" --concurrency 1 -l error --disable-hot-restart \
			--base-id $((100 + RANDOM % 1000)) >"$out/$proto-$variant.log" 2>&1 &
		pid=$!
		ready=""
		for _ in $(seq 1 300); do
			if [[ "$("${load[@]}" -c1 -m1 -n 1 "$url" 2>/dev/null || true)" == *"1 succeeded"* ]]; then ready=1; break; fi
			sleep 0.5
		done
		[ -n "$ready" ] || { echo "$proto $variant: Envoy never served (log: $out/$proto-$variant.log)" >&2; exit 1; }
		"${load[@]}" -n 500 "$url" >/dev/null
		callgrind_control -i on $pid >/dev/null 2>&1
		res="$("${load[@]}" -n "$n" "$url")"
		[[ "$res" == *"$n succeeded"* ]] || { echo "$proto $variant: not every request succeeded: $res" >&2; exit 1; }
		callgrind_control -i off $pid >/dev/null 2>&1
		callgrind_control -d $pid >/dev/null 2>&1
		kill $pid; wait $pid 2>/dev/null || true
		python3 - "$cg" "$n" "$proto" "$variant" >>"$out/results.txt" <<'PY'
import glob, sys
cg, n, proto, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
t = [int(l.split()[1]) for f in glob.glob(cg + "*") for l in open(f) if l.startswith("totals:")]
print(f"{proto}\t{variant}\t{max(t) / n:.0f}")
PY
	done
done
python3 - "$out/results.txt" "$n" <<'PY'
import sys
rows = {}
for l in open(sys.argv[1]):
    proto, variant, w = l.split("\t")
    rows.setdefault(proto, {})[variant] = float(w)
print(f"| protocol ({sys.argv[2]} requests, worker thread) | (b) | (b) + mesh-retry-all's retry policy | (b) without x-request-id | retry / (b) | no request ID / (b) |")
print("|---|---|---|---|---|---|")
for proto, r in rows.items():
    b = r["b"]
    print(f"| {proto} | {b:.0f} | {r['b-retry']:.0f} | {r['b-norequestid']:.0f} | {r['b-retry'] / b:.3f} | {r['b-norequestid'] / b:.3f} |")
PY
echo "work directory: $out"
