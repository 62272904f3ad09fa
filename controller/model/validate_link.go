package model

import (
	"github.com/meshext/meshext/controller/resource"
	"github.com/meshext/meshext/controller/validate"
)

// validateSet runs controller/validate; with a zone it also applies Kuma's
// admission rule that a zone-origin resource may not name another zone.
func validateSet(set *resource.Set, opts Options) (*resource.Set, []*resource.FieldError) {
	return opts.Validations.WithOptions(set, validate.Options{Zone: opts.Zone})
}
