#!/usr/bin/env bash
# make run: stand-in upstreams for the seed's public hosts, `meshext run` on
# examples/, and Envoy for the seed's Dataplane; with root and cgroup v2, the
# eBPF redirect too, so the seed's own commands work unchanged.
# EGRESS=1 adds examples-egress/ (mesh mTLS, a ZoneEgress on 127.0.0.2:10002,
# a rules MeshTrafficPermission) and a second Envoy for the egress: every
# request then goes workload Envoy -> egress Envoy -> stand-in.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/.run"
ENVOY="${ENVOY_BIN:-$(make -s envoy)}"
DNS=127.0.0.1:15053
STATUS=127.0.0.1:9902
NODE=default.example
EGRESS=${EGRESS:-}
mkdir -p "$RUN/standins"
rm -rf "$RUN/xds" "$RUN/drop"
# The drop directory: examples/ (edit it live); with EGRESS=1 a copy of it
# plus examples-egress/ in .run/drop.
DROP=examples
if [ -n "$EGRESS" ]; then
	DROP="$RUN/drop"
	mkdir -p "$DROP"
	cp -r examples/. "$DROP/"
	cp examples-egress/*.yaml "$DROP/"
fi

pids=()
cleanup() {
	[ -n "${CLEANED:-}" ] && return
	CLEANED=1
	echo
	echo "stopping..."
	if [ -n "${REDIRECT:-}" ]; then bin/meshext redirect detach --dataplane example >/dev/null 2>&1 || true; fi
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for _ in $(seq 1 50); do
		alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	if [ -n "${CG2:-}" ]; then rmdir "$CG2/meshext-demo" "$CG2/meshext-proxy" 2>/dev/null || true; fi
	echo "stopped."
}
on_signal() { cleanup; exit 130; }
trap on_signal INT TERM
trap cleanup EXIT

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local n=$(( $1 * 10 )) what=$2; shift 2
	for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "timed out waiting for $what; logs are in $RUN/" >&2
	exit 1
}

if [ "$(id -u)" != 0 ]; then
	echo "note: the stand-ins serve the seed's ports 80 and 443 on 127.0.0.12; that needs root." >&2
fi

go build -o bin/standins ./e2e/upstream/cmd/standins
bin/standins -ca-out "$RUN/standins/ca.crt" -ca-key-out "$RUN/standins/ca.key" \
	$( [ -f "$RUN/standins/ca.key" ] && echo -ca-cert "$RUN/standins/ca.crt" -ca-key "$RUN/standins/ca.key" ) \
	-hosts-out "$RUN/standins/hosts" >"$RUN/standins.log" 2>&1 &
pids+=($!)
wait_for 20 "stand-ins" grep -q '^ready' "$RUN/standins.log"

KUMA_DATAPLANE_RUNTIME_DYNAMIC_SYSTEM_CA_PATH="$RUN/standins/ca.crt" \
bin/meshext run --dir "$DROP" --state-dir "$RUN/state" --xds file --xds-dir "$RUN/xds" \
	--dns-listen "$DNS" --dns-hosts "$RUN/standins/hosts" --upstream-dns "$DNS" \
	--status-listen "$STATUS" --http-proxy-listen 127.0.0.1:15080 >"$RUN/meshext.log" 2>&1 &
pids+=($!)
wait_for 20 "meshext run" test -f "$RUN/xds/$NODE/lds.json"

bin/meshext bootstrap --xds file --xds-dir "$RUN/xds" --node "$NODE" --admin-port 9901 \
	--upstream-dns "$DNS" --out "$RUN/envoy-bootstrap.yaml"

# meshext run renders the meshext filter (--plugin on, stock): Envoy loads
# bin/libmeshext.so, which `make plugin` built.
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$ROOT/bin" GODEBUG=cgocheck=0

# Envoy creates its listeners in its own cgroup (the proxy cgroup of the eBPF
# redirect), so its own upstream connections are never redirected.
CG2=""
for d in /sys/fs/cgroup/unified /sys/fs/cgroup; do
	if [ "$(stat -f -c %T "$d" 2>/dev/null)" = cgroup2fs ]; then CG2=$d; break; fi
done
start_envoy() {
	"$ENVOY" -c "$RUN/envoy-bootstrap.yaml" --log-level warn --concurrency 2 --disable-hot-restart >"$RUN/envoy.log" 2>&1 &
	pids+=($!)
}
if [ "$(id -u)" = 0 ] && [ -n "$CG2" ]; then
	mkdir -p "$CG2/meshext-proxy" "$CG2/meshext-demo"
	sh -c "echo \$\$ > '$CG2/meshext-proxy/cgroup.procs' && exec '$ENVOY' -c '$RUN/envoy-bootstrap.yaml' --log-level warn --concurrency 2 --disable-hot-restart" >"$RUN/envoy.log" 2>&1 &
	pids+=($!)
else
	start_envoy
fi
wait_for 30 "Envoy" sh -c "curl -sf http://127.0.0.1:9901/ready | grep -q LIVE"

if [ -n "$EGRESS" ]; then
	# The egress Envoy: node .egress-1, admin 9903 (examples-egress/zone-egress.yaml).
	wait_for 20 "egress config" test -f "$RUN/xds/%2Eegress-1/lds.json"
	bin/meshext bootstrap --xds file --xds-dir "$RUN/xds" --zone-egress egress-1 --admin-port 9903 \
		--upstream-dns "$DNS" --out "$RUN/egress-bootstrap.yaml"
	if [ "$(id -u)" = 0 ] && [ -n "$CG2" ]; then
		sh -c "echo \$\$ > '$CG2/meshext-proxy/cgroup.procs' && exec '$ENVOY' -c '$RUN/egress-bootstrap.yaml' --log-level warn --concurrency 2 --disable-hot-restart" >"$RUN/egress.log" 2>&1 &
	else
		"$ENVOY" -c "$RUN/egress-bootstrap.yaml" --log-level warn --concurrency 2 --disable-hot-restart >"$RUN/egress.log" 2>&1 &
	fi
	pids+=($!)
	wait_for 30 "egress Envoy" sh -c "curl -sf http://127.0.0.1:9903/ready | grep -q LIVE"
fi

if [ "$(id -u)" = 0 ] && [ -n "$CG2" ]; then
	if bin/meshext redirect attach --dataplane example --cgroup meshext-demo --proxy-cgroup meshext-proxy \
		--vip "242.0.0.0/8=127.0.0.1:15001" --dns "$DNS" >"$RUN/redirect.log" 2>&1; then
		REDIRECT=1
	else
		echo "eBPF redirect not attached (see $RUN/redirect.log); the outbound port examples still work." >&2
	fi
fi

cat <<EOM

meshext is running: Envoy admin http://127.0.0.1:9901, status http://$STATUS/status, DNS $DNS.
Logs: $RUN/{meshext,envoy,standins}.log

The seed's Dataplane "example" has an outbound on 127.0.0.1:8080 for mes-http:
  curl -s http://127.0.0.1:8080/get
Any HTTP MeshExternalService by its generated hostname, through the forward proxy:
  http_proxy=http://127.0.0.1:15080 curl -s http://mes-http.svc.meshext.local/get

bin/meshext inspect $DROP --state-dir $RUN/state    # VIPs, hostnames, TLS, access, identities
EOM
if [ -n "$EGRESS" ]; then
cat <<EOM

EGRESS=1: mesh "default" has mTLS; every request leaves through the ZoneEgress
"egress-1" (Envoy admin http://127.0.0.1:9903, log $RUN/egress.log), which
checks the caller's SPIFFE ID: only spiffe://default/example may pass
(examples-egress/mtp-allow-example.yaml). Each egress log line names the caller:
  grep peer= $RUN/egress.log
EOM
fi
if [ -n "${REDIRECT:-}" ]; then
cat <<EOM

The eBPF redirect is attached to cgroup $CG2/meshext-demo. In another terminal,
open a shell in it and run the seed's commands unchanged:
  sudo sh -c 'echo \$\$ > $CG2/meshext-demo/cgroup.procs && exec bash'
  echo 'echo this' | nc -q 3 mes-tcp.svc.meshext.local 4242
  echo 'echo this' | nc -q 3 mes-tcp-tls.svc.meshext.local 4243
  echo 'echo this' | nc -q 3 mes-tcp-mtls.svc.meshext.local 4244
  curl -s http://mes-http.svc.meshext.local
  curl http://mes-https.svc.meshext.local
  $ROOT/.tools/bin/grpcurl -plaintext -v mes-grpc.svc.meshext.local:9000 list
  $ROOT/.tools/bin/grpcurl -plaintext -v mes-grpcs.svc.meshext.local:9001 list
EOM
fi
echo
echo "Press Ctrl-C to stop."
wait -n "${pids[@]}" || true
echo "a process exited; see $RUN/*.log" >&2
