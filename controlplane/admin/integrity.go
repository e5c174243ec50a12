package admin

import (
	"context"

	"backuprepo/graph"
)

// Integrity sums up the data nodes' last checks of a collection's stored versions: when one was
// last checked, how many were, and the ones whose last check failed. Whoever may read the
// collection sees it.
func (s *Service) Integrity(ctx context.Context, collectionID string) (graph.CollectionIntegrity, error) {
	p, err := principal(ctx)
	if err != nil {
		return graph.CollectionIntegrity{}, err
	}
	c, _, err := s.collectionFor(ctx, p, collectionID, ReadCollection)
	if err != nil {
		return graph.CollectionIntegrity{}, err
	}
	checks, err := s.db.CollectionChecks(ctx, c.ID)
	if err != nil {
		return graph.CollectionIntegrity{}, err
	}
	out := graph.CollectionIntegrity{CheckedVersions: len(checks), Problems: []graph.IntegrityProblem{}}
	for _, k := range checks {
		if out.LastCheckedAt == nil || k.CheckedAt.After(*out.LastCheckedAt) {
			at := k.CheckedAt
			out.LastCheckedAt = &at
		}
		if k.OK {
			continue
		}
		out.Problems = append(out.Problems, graph.IntegrityProblem{
			VersionID: k.VersionID, Version: k.Number, Filename: k.Filename, Kind: graph.IntegrityKind(k.Kind),
			Detail: k.Detail, ExpectedSha256: k.ExpectedSHA256, FoundSha256: k.FoundSHA256, FoundSize: k.FoundSize,
			Node: k.NodeName, DetectedAt: k.CheckedAt,
		})
	}
	return out, nil
}
