package model

import "github.com/meshext/meshext/controller/resource"

// validateSet is the hook to controller/validate. Until that package lands it
// keeps every resource that parsed cleanly.
func validateSet(set *resource.Set) (*resource.Set, []*resource.FieldError) {
	valid := &resource.Set{Files: set.Files}
	for _, o := range set.Objects() {
		if !o.GetMeta().Malformed {
			_ = valid.Add(o)
		}
	}
	return valid, nil
}
