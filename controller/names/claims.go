package names

// Claims settles who owns a derived identifier that two resources would
// share (two Dataplanes with one node id, two services with one cluster).
// It remembers the winners of the last Settle of each space, so the resource
// already serving keeps its identifier when a newcomer folds onto it, and
// the newcomer is the one refused. The zero value is ready to use; a nil
// *Claims remembers nothing (one-shot callers such as `meshext render`).
// Not safe for concurrent use.
type Claims struct {
	held map[string]map[string]string // space -> identifier -> owner
}

// Claimant is one resource asking for an identifier.
type Claimant struct {
	ID    string // the derived identifier
	Owner string // who asks; unique within one Settle
}

// Settle gives each identifier to one claimant: the owner that held it at the
// previous Settle of this space, if it still asks for it, else the first
// claimant in cs (callers list them oldest first). It returns, for each
// claimant, the index of the claimant that got its identifier, which is its
// own index when it won.
func (c *Claims) Settle(space string, cs []Claimant) []int {
	var prev map[string]string
	if c != nil {
		prev = c.held[space]
	}
	winner := make(map[string]int, len(cs))
	for i, cl := range cs {
		w, seen := winner[cl.ID]
		switch {
		case !seen:
			winner[cl.ID] = i
		case prev[cl.ID] == cl.Owner && cs[w].Owner != cl.Owner:
			winner[cl.ID] = i // the incumbent beats an older-looking newcomer
		}
	}
	out := make([]int, len(cs))
	next := make(map[string]string, len(winner))
	for i, cl := range cs {
		out[i] = winner[cl.ID]
		if out[i] == i {
			next[cl.ID] = cl.Owner
		}
	}
	if c != nil {
		if c.held == nil {
			c.held = map[string]map[string]string{}
		}
		c.held[space] = next
	}
	return out
}
