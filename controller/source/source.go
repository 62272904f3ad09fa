// Package source says what `meshext run` reads its resources from. A source
// hands the pipeline named documents (files of a drop directory, objects of
// the Kubernetes API) that parse into one resource.Set, so validation,
// hostnames, VIPs, rendering and delivery are the same whatever the source:
// sources -> model -> render -> delivery. The drop directory is
// controller/run's own; Kubernetes is controller/source/kube.
package source

import (
	"context"
	"time"

	"github.com/meshext/meshext/controller/resource"
)

// Input is one reading of a source.
type Input struct {
	// Names lists every document (a file path, an object reference), in
	// the order that decides between two definitions of one name.
	Names []string
	// Data holds the content of each document that was read.
	Data map[string][]byte
	// Problems say why each other document was not read.
	Problems []*resource.FieldError
	// Sum changes whenever names or contents change.
	Sum [32]byte
}

// Source is where resources come from.
type Source interface {
	// Read returns what the source holds now. It must not block for long
	// (a Kubernetes source reads its informers' caches).
	Read() (*Input, error)
	// Parse reads one document of an Input into resources, with the
	// problems found (each naming the document and the field).
	Parse(name string, data []byte) ([]resource.Object, []*resource.FieldError)
	// Watch sends on changed, never blocking, once a burst of changes has
	// been quiet for debounce; it returns when ctx ends.
	Watch(ctx context.Context, debounce time.Duration, changed chan<- struct{}) error
	// String names the source in logs and status.
	String() string
}
