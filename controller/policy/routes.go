package policy

import (
	"reflect"
	"slices"

	"github.com/meshext/meshext/controller/resource"
)

// mergeHTTPRules merges the rules of MeshHTTPRoute to[] items (lowest
// precedence first) as Kuma does: each item's rules are taken in reverse
// and appended; rules with equal matches merge (the later conf over the
// earlier) and move to where the later one stands; the list is reversed
// again. So the rules of the item with the highest precedence come first,
// each item keeps its own order, and equal matches combine field by field.
// Callers hold r.mu.
func (r *Resolver) mergeHTTPRules(es []entry) []HTTPRule {
	key := entriesKey("", es)
	if rules, ok := r.rules[key]; ok {
		return rules
	}
	type acc struct {
		matches []resource.HTTPRouteMatch
		confs   []confOrigin
		skip    bool
	}
	var list []acc
	for _, e := range es {
		rules, _ := e.conf.(*[]resource.HTTPRouteRule)
		if rules == nil {
			continue
		}
		reversed := slices.Clone(*rules)
		slices.Reverse(reversed)
		o := originOf(e.policy, e.index)
		for i := range reversed {
			rule := &reversed[i]
			item := acc{matches: rule.Matches, confs: []confOrigin{{generic: mustGeneric(&rule.Default), origin: o}}}
			for j := range list {
				if !list[j].skip && reflect.DeepEqual(list[j].matches, rule.Matches) {
					item.confs = append(slices.Clone(list[j].confs), item.confs...)
					list[j] = acc{skip: true}
				}
			}
			list = append(list, item)
		}
	}
	var out []HTTPRule
	for _, a := range list {
		if a.skip {
			continue
		}
		c := mergeList(resource.KindMeshHTTPRoute, a.confs)
		out = append(out, HTTPRule{
			Matches: a.matches,
			Conf:    *c.Value.(*resource.HTTPRouteConf),
			Fields:  c.Fields,
			Origin:  a.confs[len(a.confs)-1].origin,
		})
	}
	slices.Reverse(out)
	r.rules[key] = out
	return out
}
