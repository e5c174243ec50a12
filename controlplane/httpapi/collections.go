package httpapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"backuprepo/controlplane/admin"
	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

// CollectionREST is what the collection routes answered by the control plane need.
type CollectionREST interface {
	CollectionEndpoint(ctx context.Context, collectionID string) (admin.Endpoint, error)
	HealthByCode(ctx context.Context, collectionID, code string) (shared.CollectionHealth, error)
}

// collectionHealthBody is the JSON of GET …/health: the checks of SPEC §4.1.
type collectionHealthBody struct {
	Healthy                 bool     `json:"healthy"`
	WindowCompliance        bool     `json:"windowCompliance"`
	NewestVersionAgeSeconds *int64   `json:"newestVersionAgeSeconds"`
	SoftLimit               bool     `json:"softLimit"`
	HardLimit               bool     `json:"hardLimit"`
	Messages                []string `json:"messages"`
}

func (s *server) collectionHealth(w http.ResponseWriter, r *http.Request) {
	h, err := s.cfg.Collections.HealthByCode(r.Context(), chi.URLParam(r, "id"), r.URL.Query().Get("code"))
	if err != nil {
		envelope.WriteError(w, err)
		return
	}
	body := collectionHealthBody{Healthy: h.Healthy, WindowCompliance: h.WindowCompliance,
		SoftLimit: h.SoftLimitOK, HardLimit: h.HardLimitOK, Messages: h.Messages}
	if h.NewestVersionAge != nil {
		secs := int64(h.NewestVersionAge.Seconds())
		body.NewestVersionAgeSeconds = &secs
	}
	if body.Messages == nil {
		body.Messages = []string{}
	}
	if h.Healthy {
		envelope.WriteData(w, http.StatusOK, body)
		return
	}
	writeJSONBody(w, http.StatusServiceUnavailable, struct {
		Status bool                 `json:"status"`
		Error  string               `json:"error"`
		Code   shared.Code          `json:"code"`
		Data   collectionHealthBody `json:"data"`
	}{false, "collection is unhealthy: " + strings.Join(body.Messages, "; "), shared.CodeCollectionUnhealthy, body})
}

func (s *server) collectionEndpoint(w http.ResponseWriter, r *http.Request) {
	ep, err := s.cfg.Collections.CollectionEndpoint(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		envelope.WriteError(w, err)
		return
	}
	envelope.WriteData(w, http.StatusOK, ep)
}
