package admin

import (
	"context"
	"net/url"

	"backuprepo/shared"
)

// Endpoint says where a caller may send a collection's bytes directly, skipping the front
// door (SPEC §4.1 GET …/endpoint).
type Endpoint struct {
	NodeName    string `json:"nodeName"`
	UploadURL   string `json:"uploadUrl"`
	DownloadURL string `json:"downloadUrl"`
}

// CollectionEndpoint returns the direct URLs of a collection the caller may read.
func (s *Service) CollectionEndpoint(ctx context.Context, collectionID string) (Endpoint, error) {
	p, err := principal(ctx)
	if err != nil {
		return Endpoint{}, err
	}
	c, _, err := s.collectionFor(ctx, p, collectionID, ReadCollection)
	if err != nil {
		return Endpoint{}, err
	}
	node, ok := s.nodes.Node(c.NodeName)
	if c.NodeName == "" || !ok {
		return Endpoint{}, shared.Errorf(shared.CodeNodeUnavailable, "the collection's data node is not in the cluster view")
	}
	base, err := url.JoinPath(node.PublicURL, "api/stable/repository/collection", c.ID, "versions")
	if err != nil {
		return Endpoint{}, shared.Wrap(err, shared.CodeInternal, "the data node's public URL is invalid")
	}
	return Endpoint{NodeName: node.Name, UploadURL: base, DownloadURL: base + "/latest"}, nil
}

// HealthByCode judges a collection for a monitoring system that holds its health code
// instead of a token (SPEC §4.1 GET …/health?code=). An unknown collection, one without a
// code and a wrong code all answer FORBIDDEN alike, so the endpoint reveals nothing.
func (s *Service) HealthByCode(ctx context.Context, collectionID, code string) (shared.CollectionHealth, error) {
	refused := shared.Errorf(shared.CodeForbidden, "wrong or missing health code")
	if code == "" || !CollectionIDPattern.MatchString(collectionID) {
		return shared.CollectionHealth{}, refused
	}
	hash, err := s.db.CollectionHealthCodeHash(ctx, collectionID)
	if shared.ErrorCode(err) == shared.CodeNotFound {
		return shared.CollectionHealth{}, refused
	}
	if err != nil {
		return shared.CollectionHealth{}, err
	}
	if hash == "" || !HealthCodeMatches(hash, code) {
		return shared.CollectionHealth{}, refused
	}
	c, err := s.db.CollectionByID(ctx, collectionID)
	if err != nil {
		return shared.CollectionHealth{}, err
	}
	versions, err := s.db.ListVersions(ctx, c.ID)
	if err != nil {
		return shared.CollectionHealth{}, err
	}
	return ComputeHealth(c, versions, s.now()), nil
}
