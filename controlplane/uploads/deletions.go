package uploads

import (
	"context"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

// maxDeletions bounds one page of pending file deletions.
const maxDeletions = 1000

// Deletions lists files the calling node must delete: versions deleted or rotated out, whose
// tombstones PostgreSQL keeps until the node acknowledges them.
func (s *Service) Deletions(ctx context.Context, node string, req internalapi.DeletionsRequest) (internalapi.DeletionsResponse, error) {
	limit := req.Limit
	if limit <= 0 || limit > maxDeletions {
		limit = maxDeletions
	}
	files, err := s.db.PendingDeletions(ctx, node, limit)
	if err != nil {
		return internalapi.DeletionsResponse{}, dbError(err)
	}
	return internalapi.DeletionsResponse{Files: files}, nil
}

// AckDeletions forgets tombstones of files the calling node has removed.
func (s *Service) AckDeletions(ctx context.Context, node string, req internalapi.DeletionsAck) error {
	if len(req.VersionIDs) > maxDeletions {
		return shared.Errorf(shared.CodeInvalidInput, "at most %d ids per acknowledgement", maxDeletions)
	}
	if err := s.db.AckDeletions(ctx, node, req.VersionIDs); err != nil {
		return dbError(err)
	}
	return nil
}
