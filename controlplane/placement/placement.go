// Package placement decides which data node a new collection goes to (SPEC §6) and explains the
// choice in a sentence for the audit log.
package placement

import (
	"fmt"
	"sort"
	"strings"

	"backuprepo/shared"
	"backuprepo/shared/size"
)

// Candidate is a data node as placement sees it.
type Candidate struct {
	Node        shared.DataNode
	Drained     bool  // the operator's drain wish (data_nodes.drained)
	Committed   int64 // bytes promised to the collections already placed there, not yet used
	Collections int   // how many collections those are; only for the explanation
}

// Room is the node's free space minus what it already promised.
func (c Candidate) Room() int64 { return c.Node.FreeBytes() - c.Committed }

// Decision is where the collection goes and why.
type Decision struct {
	NodeName string
	Reason   string
}

// Choose picks, among the alive, non-drained, non-draining nodes of zone (any zone when empty),
// the one with the most room; ties go to the smaller name so that the choice is repeatable.
// need is the new collection's maxCollectionSize. When no eligible node has room for it the
// error is NO_CAPACITY, naming the best room on offer.
func Choose(nodes []Candidate, need int64, zone string) (Decision, error) {
	var eligible []Candidate
	for _, c := range nodes {
		if c.Node.State != shared.NodeAlive || c.Drained || (zone != "" && c.Node.Zone != zone) {
			continue
		}
		eligible = append(eligible, c)
	}
	where := ""
	if zone != "" {
		where = fmt.Sprintf(" in zone %q", zone)
	}
	if len(eligible) == 0 {
		return Decision{}, shared.Errorf(shared.CodeNoCapacity,
			"no data node%s is alive and accepting new collections", where)
	}
	sort.Slice(eligible, func(i, j int) bool {
		ri, rj := eligible[i].Room(), eligible[j].Room()
		if ri != rj {
			return ri > rj
		}
		return eligible[i].Node.Name < eligible[j].Node.Name
	})
	best := eligible[0]
	if best.Room() < need {
		return Decision{}, shared.Errorf(shared.CodeNoCapacity,
			"no data node%s has room for %s: the most is %s on %s (%s)", where, size.Format(need),
			size.Format(max(best.Room(), 0)), best.Node.Name, describe(best))
	}
	reason := fmt.Sprintf("node %s has the most room%s: %s", best.Node.Name, where, describe(best))
	if len(eligible) > 1 {
		others := make([]string, 0, len(eligible)-1)
		for _, c := range eligible[1:] {
			others = append(others, fmt.Sprintf("%s has %s", c.Node.Name, size.Format(c.Room())))
		}
		reason += "; " + strings.Join(others, ", ")
	}
	return Decision{NodeName: best.Node.Name, Reason: reason}, nil
}

// describe explains a candidate's room: "812 GiB free, 100 GiB promised to 3 collections".
func describe(c Candidate) string {
	s := size.Format(c.Node.FreeBytes()) + " free"
	switch {
	case c.Committed == 0 && c.Collections == 0:
		return s + ", nothing promised"
	case c.Collections == 1:
		return s + ", " + size.Format(c.Committed) + " promised to 1 collection"
	case c.Collections > 1:
		return s + fmt.Sprintf(", %s promised to %d collections", size.Format(c.Committed), c.Collections)
	default:
		return s + ", " + size.Format(c.Committed) + " promised"
	}
}
