package main

// Egress-authorization flags shared by `meshext run` and `meshext render`.
const (
	flavorUsage = "Envoy build the config targets: stock (the meshext filter is the dynamic module libmeshext.so, " +
		"found through Envoy's ENVOY_DYNAMIC_MODULES_SEARCH_PATH; run Envoy with GODEBUG=cgocheck=0) or contrib " +
		"(envoy.filters.http.golang loading libmeshext-golang.so)"
	pluginUsage = "egress authorization on HTTP MeshExternalServices: on (the meshext Go filter), off (native Envoy RBAC, " +
		"no Go in Envoy), or the path of libmeshext-golang.so (contrib; implies on). TCP services always get native network RBAC"
	httpProxyUsage = "IP:PORT of an HTTP forward-proxy listener on every Envoy node: clients with http_proxy set reach " +
		"any HTTP MeshExternalService by its generated hostname; unknown hosts get 404 (\"\" = none)"
)
