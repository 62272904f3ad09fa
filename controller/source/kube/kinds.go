package kube

import (
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshext/meshext/controller/resource"
)

// Group and Version of Kuma's custom resources (and ours, the same).
const (
	Group   = "kuma.io"
	Version = "v1alpha1"
)

// KindInfo is how one Kuma kind is served by the API server: the names of
// its CustomResourceDefinition, as Kuma names them.
type KindInfo struct {
	Kind       resource.Kind
	Plural     string
	Singular   string
	ShortNames []string
	// Namespaced is false for Mesh, the one cluster-scoped kind.
	Namespaced bool
}

// GVR is the kind's resource in kuma.io/v1alpha1.
func (k KindInfo) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: Group, Version: Version, Resource: k.Plural}
}

// CRDName is the CustomResourceDefinition's name, <plural>.kuma.io.
func (k KindInfo) CRDName() string { return k.Plural + "." + Group }

// Kinds are the custom resources meshext reads, one per kind of
// resource.Kinds except Secret (a core Kubernetes Secret), in that order.
// Names, short names and scopes are Kuma v2.14's.
var Kinds = []KindInfo{
	{Kind: resource.KindMesh, Plural: "meshes", Singular: "mesh", ShortNames: []string{"m"}},
	{Kind: resource.KindHostnameGenerator, Plural: "hostnamegenerators", Singular: "hostnamegenerator", ShortNames: []string{"hg"}, Namespaced: true},
	{Kind: resource.KindMeshExternalService, Plural: "meshexternalservices", Singular: "meshexternalservice", ShortNames: []string{"extsvc"}, Namespaced: true},
	{Kind: resource.KindMeshTrafficPermission, Plural: "meshtrafficpermissions", Singular: "meshtrafficpermission", ShortNames: []string{"mtp"}, Namespaced: true},
	{Kind: resource.KindDataplane, Plural: "dataplanes", Singular: "dataplane", ShortNames: []string{"dp"}, Namespaced: true},
	{Kind: resource.KindZoneEgress, Plural: "zoneegresses", Singular: "zoneegress", ShortNames: []string{"ze"}, Namespaced: true},
	{Kind: resource.KindMeshHTTPRoute, Plural: "meshhttproutes", Singular: "meshhttproute", ShortNames: []string{"mhttpr"}, Namespaced: true},
	{Kind: resource.KindMeshTCPRoute, Plural: "meshtcproutes", Singular: "meshtcproute", ShortNames: []string{"mtcpr"}, Namespaced: true},
	{Kind: resource.KindMeshLoadBalancingStrategy, Plural: "meshloadbalancingstrategies", Singular: "meshloadbalancingstrategy", ShortNames: []string{"mlbs"}, Namespaced: true},
	{Kind: resource.KindMeshAccessLog, Plural: "meshaccesslogs", Singular: "meshaccesslog", ShortNames: []string{"mal"}, Namespaced: true},
	{Kind: resource.KindMeshTimeout, Plural: "meshtimeouts", Singular: "meshtimeout", ShortNames: []string{"mt"}, Namespaced: true},
	{Kind: resource.KindMeshHealthCheck, Plural: "meshhealthchecks", Singular: "meshhealthcheck", ShortNames: []string{"mhc"}, Namespaced: true},
	{Kind: resource.KindMeshCircuitBreaker, Plural: "meshcircuitbreakers", Singular: "meshcircuitbreaker", ShortNames: []string{"mcb"}, Namespaced: true},
	{Kind: resource.KindMeshRetry, Plural: "meshretries", Singular: "meshretry", ShortNames: []string{"mr"}, Namespaced: true},
}

// KindInfoOf returns the custom resource of a kind (false for Secret and
// kinds meshext does not read).
func KindInfoOf(kind resource.Kind) (KindInfo, bool) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return KindInfo{}, false
}
