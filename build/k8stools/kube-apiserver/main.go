// Command kube-apiserver is the upstream API server, unchanged, built from the
// k8s.io/kubernetes module pinned in this module's go.mod (test cluster only).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
