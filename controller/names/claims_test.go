package names_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/meshext/meshext/controller/names"
)

func TestClaimsFirstComerWinsWhenFresh(t *testing.T) {
	var c names.Claims
	got := c.Settle("node", []names.Claimant{
		{ID: "a.b.c", Owner: "Dataplane a/b.c"},
		{ID: "a.b.c", Owner: "Dataplane a.b/c"},
		{ID: "x.y", Owner: "Dataplane x/y"},
	})
	assert.Equal(t, []int{0, 0, 2}, got)
}

func TestClaimsIncumbentKeepsItsIdentifier(t *testing.T) {
	var c names.Claims
	c.Settle("node", []names.Claimant{{ID: "a.b.c", Owner: "Dataplane a.b/c"}})
	// A newcomer that sorts first (older creation time, or mesh "a" < "a.b")
	// does not take the id from the Dataplane already serving.
	got := c.Settle("node", []names.Claimant{
		{ID: "a.b.c", Owner: "Dataplane a/b.c"},
		{ID: "a.b.c", Owner: "Dataplane a.b/c"},
	})
	assert.Equal(t, []int{1, 1}, got)
	// Once the incumbent is gone, the newcomer gets it, and then keeps it.
	assert.Equal(t, []int{0}, c.Settle("node", []names.Claimant{{ID: "a.b.c", Owner: "Dataplane a/b.c"}}))
	assert.Equal(t, []int{1, 1}, c.Settle("node", []names.Claimant{
		{ID: "a.b.c", Owner: "Dataplane a.b/c"},
		{ID: "a.b.c", Owner: "Dataplane a/b.c"},
	}))
}

func TestClaimsSpacesAreSeparate(t *testing.T) {
	var c names.Claims
	c.Settle("node", []names.Claimant{{ID: "x", Owner: "B"}})
	assert.Equal(t, []int{0, 0}, c.Settle("cluster", []names.Claimant{{ID: "x", Owner: "A"}, {ID: "x", Owner: "B"}}))
}

func TestNilClaimsRemembersNothing(t *testing.T) {
	var c *names.Claims
	c.Settle("node", []names.Claimant{{ID: "x", Owner: "B"}})
	assert.Equal(t, []int{0, 0}, c.Settle("node", []names.Claimant{{ID: "x", Owner: "A"}, {ID: "x", Owner: "B"}}))
}
