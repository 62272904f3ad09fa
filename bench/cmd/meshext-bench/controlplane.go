package main

import (
	"context"
	"strings"
)

type cpConfig struct {
	quick                   bool
	cpbench, meshext, envoy string
	workDir                 string
}

func runControlPlane(ctx context.Context, cfg cpConfig) string {
	var b strings.Builder
	b.WriteString("## 2. Control plane\n\nnot available: pending\n\n")
	return b.String()
}
