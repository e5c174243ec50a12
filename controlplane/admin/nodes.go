package admin

import (
	"context"
	"strconv"

	"backuprepo/controlplane/placement"
	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
)

// place picks the data node for a new collection of need bytes (0 = unlimited). Only nodes
// the control plane has recorded are candidates: the collection row refers to that record.
func (s *Service) place(ctx context.Context, need int64, zone string) (placement.Decision, error) {
	recs, err := s.db.DataNodes(ctx)
	if err != nil {
		return placement.Decision{}, err
	}
	drained := make(map[string]bool, len(recs))
	for _, r := range recs {
		drained[r.Node.Name] = r.Drained
	}
	commits, err := s.db.NodeCommitments(ctx)
	if err != nil {
		return placement.Decision{}, err
	}
	var cands []placement.Candidate
	for _, n := range s.nodes.Nodes() {
		d, recorded := drained[n.Name]
		if !recorded {
			continue
		}
		cands = append(cands, placement.Candidate{Node: n, Drained: d, Committed: commits[n.Name].Bytes, Collections: commits[n.Name].Collections})
	}
	return placement.Choose(cands, need, zone)
}

// merge combines the recorded nodes with the live gossip view (which wins) and shows a
// drained node that is otherwise alive as draining.
func (s *Service) merge(recs []postgres.DataNodeRecord) []shared.DataNode {
	out := make([]shared.DataNode, 0, len(recs))
	for _, r := range recs {
		n := r.Node
		if live, ok := s.nodes.Node(n.Name); ok {
			n = live
		}
		if r.Drained && n.State == shared.NodeAlive {
			n.State = shared.NodeDraining
		}
		out = append(out, n)
	}
	return out
}

func nodeNotFound() error { return shared.Errorf(shared.CodeNotFound, "data node not found") }

// node returns one node as DataNodes shows it.
func (s *Service) node(ctx context.Context, name string) (shared.DataNode, error) {
	recs, err := s.db.DataNodes(ctx)
	if err != nil {
		return shared.DataNode{}, err
	}
	for _, n := range s.merge(recs) {
		if n.Name == name {
			return n, nil
		}
	}
	return shared.DataNode{}, nodeNotFound()
}

// DataNodes lists every data node (systemAdmin only).
func (s *Service) DataNodes(ctx context.Context) ([]shared.DataNode, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if !Can(p, ManageNodes, "", "", nil) {
		return nil, forbidden()
	}
	recs, err := s.db.DataNodes(ctx)
	if err != nil {
		return nil, err
	}
	return s.merge(recs), nil
}

// DataNode returns one data node: to systemAdmin, or to a tenant user who may read a
// collection placed on it.
func (s *Service) DataNode(ctx context.Context, name string) (shared.DataNode, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.DataNode{}, err
	}
	if !Can(p, ManageNodes, "", "", nil) {
		if p.User.TenantID == "" {
			return shared.DataNode{}, forbidden()
		}
		q := postgres.CollectionQuery{TenantID: p.User.TenantID, NodeName: name, Limit: 1}
		if len(userRoles(p.User, p.User.TenantID, nil)) == 0 {
			q.GrantedTo = p.User.ID
		}
		if p.Scope != nil {
			q.IDs = make([]string, 0, len(p.Scope))
			for _, e := range p.Scope {
				q.IDs = append(q.IDs, e.Collection)
			}
		}
		held, err := s.db.ListCollections(ctx, q)
		if err != nil {
			return shared.DataNode{}, err
		}
		if len(held) == 0 {
			return shared.DataNode{}, forbidden()
		}
	}
	return s.node(ctx, name)
}

// NodeCollections lists the collections placed on a node (systemAdmin only).
func (s *Service) NodeCollections(ctx context.Context, name string) ([]shared.Collection, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if !Can(p, ManageNodes, "", "", nil) {
		return nil, forbidden()
	}
	if _, err := s.node(ctx, name); err != nil {
		return nil, err
	}
	out := []shared.Collection{}
	after := ""
	for {
		page, err := s.db.ListCollections(ctx, postgres.CollectionQuery{NodeName: name, After: after, Limit: maxPageSize})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < maxPageSize {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// DrainDataNode stops new placements on a node (systemAdmin only).
func (s *Service) DrainDataNode(ctx context.Context, name string) (shared.DataNode, error) {
	return s.setDrained(ctx, name, true, "drainDataNode")
}

// UndrainDataNode lets a node take new collections again (systemAdmin only).
func (s *Service) UndrainDataNode(ctx context.Context, name string) (shared.DataNode, error) {
	return s.setDrained(ctx, name, false, "undrainDataNode")
}

func (s *Service) setDrained(ctx context.Context, name string, drained bool, action string) (shared.DataNode, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.DataNode{}, err
	}
	if !Can(p, ManageNodes, "", "", nil) {
		return shared.DataNode{}, forbidden()
	}
	if err := s.db.SetDrained(ctx, name, drained, event(ctx, p, action, "dataNode", name, "",
		map[string]string{"drained": strconv.FormatBool(drained)})); err != nil {
		return shared.DataNode{}, err
	}
	return s.node(ctx, name)
}
