package placement

import (
	"strings"
	"testing"

	"backuprepo/shared"
)

const gib = int64(1) << 30

func node(name, zone string, state shared.NodeState, free int64) shared.DataNode {
	return shared.DataNode{Name: name, Zone: zone, State: state, PublicURL: "http://" + name,
		Disks: []shared.Disk{{Path: "/d1", Total: 2000 * gib, Free: free / 2}, {Path: "/d2", Total: 2000 * gib, Free: free - free/2}}}
}

func TestChoose(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		nodes      []Candidate
		need       int64
		zone       string
		wantNode   string
		wantReason string // exact when set
		wantErr    string // substring of the NO_CAPACITY message when set
	}{
		{
			name: "most room wins, commitments count",
			nodes: []Candidate{
				{Node: node("dn-1", "", shared.NodeAlive, 900*gib), Committed: 400 * gib, Collections: 2},
				{Node: node("dn-2", "", shared.NodeAlive, 812*gib), Committed: 100 * gib, Collections: 3},
				{Node: node("dn-3", "", shared.NodeAlive, 600*gib)},
			},
			need:       10 * gib,
			wantNode:   "dn-2",
			wantReason: "node dn-2 has the most room: 812 GiB free, 100 GiB promised to 3 collections; dn-3 has 600 GiB, dn-1 has 500 GiB",
		},
		{
			name: "tie broken by name",
			nodes: []Candidate{
				{Node: node("b", "", shared.NodeAlive, 100*gib)},
				{Node: node("a", "", shared.NodeAlive, 100*gib)},
			},
			need:       gib,
			wantNode:   "a",
			wantReason: "node a has the most room: 100 GiB free, nothing promised; b has 100 GiB",
		},
		{
			name: "suspect, dead, left and self-draining nodes are skipped",
			nodes: []Candidate{
				{Node: node("suspect", "", shared.NodeSuspect, 900*gib)},
				{Node: node("dead", "", shared.NodeDead, 900*gib)},
				{Node: node("left", "", shared.NodeLeft, 900*gib)},
				{Node: node("draining", "", shared.NodeDraining, 900*gib)},
				{Node: node("small", "", shared.NodeAlive, 5*gib), Committed: gib, Collections: 1},
			},
			need:       4 * gib,
			wantNode:   "small",
			wantReason: "node small has the most room: 5 GiB free, 1 GiB promised to 1 collection",
		},
		{
			name: "operator-drained node is skipped",
			nodes: []Candidate{
				{Node: node("big", "", shared.NodeAlive, 900*gib), Drained: true},
				{Node: node("small", "", shared.NodeAlive, 10*gib)},
			},
			need:     gib,
			wantNode: "small",
		},
		{
			name: "zone is respected",
			nodes: []Candidate{
				{Node: node("eu-big", "eu", shared.NodeAlive, 900*gib)},
				{Node: node("us-small", "us", shared.NodeAlive, 10*gib)},
			},
			need:       gib,
			zone:       "us",
			wantNode:   "us-small",
			wantReason: `node us-small has the most room in zone "us": 10 GiB free, nothing promised`,
		},
		{
			name:     "exact fit is enough",
			nodes:    []Candidate{{Node: node("a", "", shared.NodeAlive, 10*gib), Committed: 4 * gib}},
			need:     6 * gib,
			wantNode: "a",
		},
		{
			name:     "unlimited collection fits on an alive node with any room",
			nodes:    []Candidate{{Node: node("a", "", shared.NodeAlive, 0)}},
			need:     0,
			wantNode: "a",
		},
		{
			name: "no room anywhere",
			nodes: []Candidate{
				{Node: node("a", "", shared.NodeAlive, 10*gib), Committed: 4 * gib, Collections: 2},
				{Node: node("b", "", shared.NodeAlive, 3*gib)},
			},
			need:    7 * gib,
			wantErr: "no data node has room for 7 GiB: the most is 6 GiB on a (10 GiB free, 4 GiB promised to 2 collections)",
		},
		{
			name:    "overcommitted node offers no room",
			nodes:   []Candidate{{Node: node("a", "", shared.NodeAlive, gib), Committed: 5 * gib}},
			need:    0,
			wantErr: "the most is 0 B on a",
		},
		{
			name:    "nothing in the zone",
			nodes:   []Candidate{{Node: node("a", "eu", shared.NodeAlive, 10*gib)}},
			need:    gib,
			zone:    "us",
			wantErr: `no data node in zone "us" is alive and accepting new collections`,
		},
		{
			name:    "no nodes at all",
			need:    gib,
			wantErr: "no data node is alive",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := Choose(tc.nodes, tc.need, tc.zone)
			if tc.wantErr != "" {
				if shared.ErrorCode(err) != shared.CodeNoCapacity || !strings.Contains(shared.ErrorMessage(err), tc.wantErr) {
					t.Fatalf("Choose = %+v, %v; want NO_CAPACITY containing %q", d, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Choose: %v", err)
			}
			if d.NodeName != tc.wantNode {
				t.Fatalf("chose %s (%s), want %s", d.NodeName, d.Reason, tc.wantNode)
			}
			if tc.wantReason != "" && d.Reason != tc.wantReason {
				t.Fatalf("reason:\n got %q\nwant %q", d.Reason, tc.wantReason)
			}
		})
	}
}
