package bpf

// Regenerate with `make bpf` (needs clang, llvm-strip and libbpf-dev). The
// generated redirect_bpfel.go/.o are committed so builds need no clang.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -tags linux -target bpfel -type config -type orig_dst -type proxy_target -type vip_key -type tuple_key redirect c/redirect.c -- -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
