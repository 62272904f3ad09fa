#!/usr/bin/env bash
# make k8s-tools: kube-apiserver, kubectl and etcd for the test cluster, built
# from the module in build/k8stools into .tools/k8s (K8S_TOOLS_DIR overrides).
# Built once: a rerun does nothing while the stamp (module versions, Go version,
# a hash of the builder's sources) matches and the binaries are there.
set -euo pipefail
cd "$(dirname "$0")/k8stools"
GO=${GO:-go}
OUT=${K8S_TOOLS_DIR:-$(cd ../.. && pwd)/.tools/k8s}
BINS=(kube-apiserver kubectl etcd)

modver() { awk -v m="$1" '$1 == m { print $2; exit }' go.mod; }
k8s=$(modver k8s.io/kubernetes)
etcd=$(modver go.etcd.io/etcd/server/v3)
src=$(cat go.mod go.sum $(find . -name '*.go' | LC_ALL=C sort) | sha256sum | cut -c1-16)
stamp="k8s.io/kubernetes $k8s go.etcd.io/etcd/server/v3 $etcd $("$GO" env GOVERSION) src:$src"

uptodate=1
[ "$(cat "$OUT/VERSION" 2>/dev/null)" = "$stamp" ] || uptodate=0
for b in "${BINS[@]}"; do [ -x "$OUT/$b" ] || uptodate=0; done
if [ "$uptodate" = 1 ]; then
	echo "k8s-tools: up to date in $OUT ($stamp)" >&2
	exit 0
fi

# The binaries report the release they are built from (kubectl version,
# /version) instead of v0.0.0-master, as upstream's build scripts arrange.
minor=${k8s#v*.}
minor=${minor%%.*}
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$k8s -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean"

mkdir -p "$OUT"
tmp=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "k8s-tools: building ${BINS[*]} ($stamp); about 15 min on 2 cores from a cold build cache" >&2
start=$(date +%s)
# One go build for all three: they share most packages (grpc, etcd client,
# apimachinery), each compiled once. nice: the machine is shared.
nice -n 10 "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp/" "${BINS[@]/#/./}"
rm -f "$OUT/VERSION"
for b in "${BINS[@]}"; do mv -f "$tmp/$b" "$OUT/$b"; done
echo "$stamp" >"$OUT/VERSION"
echo "k8s-tools: built in $(($(date +%s) - start)) s into $OUT:" >&2
(cd "$OUT" && ls -l "${BINS[@]}" >&2)
