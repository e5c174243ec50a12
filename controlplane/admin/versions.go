package admin

import (
	"context"

	"backuprepo/shared"
	"backuprepo/shared/ref"
)

// DeleteVersion deletes one version of a collection (collectionManager). The row goes in one
// statement with its audit event; the data node removes the file when it next reconciles its
// disk with the versions the control plane knows.
func (s *Service) DeleteVersion(ctx context.Context, collectionID, refText string) (shared.Version, error) {
	p, err := principal(ctx)
	if err != nil {
		return shared.Version{}, err
	}
	c, _, err := s.collectionFor(ctx, p, collectionID, ManageCollection)
	if err != nil {
		return shared.Version{}, err
	}
	r, err := ref.Parse(refText)
	if err != nil {
		return shared.Version{}, err
	}
	return s.db.DeleteVersionByRef(ctx, c.ID, r, event(ctx, p, "deleteVersion", "version", "", c.TenantID, nil))
}
