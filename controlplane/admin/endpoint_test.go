package admin_test

import (
	"testing"
	"time"

	"backuprepo/shared"
)

func TestCollectionEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.tenant("ep-a", 0), e.tenant("ep-b", 0)
	c := e.collection(a.ID, "ep-coll")
	reader := e.as(e.user(a.ID, "reader@a.example.org", shared.RoleBackupDownloader), nil)
	ep, err := e.svc.CollectionEndpoint(reader, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := "http://127.0.0.1:1/api/stable/repository/collection/ep-coll/versions"
	if ep.NodeName != e.node || ep.UploadURL != want || ep.DownloadURL != want+"/latest" {
		t.Fatalf("endpoint = %+v", ep)
	}
	other := e.as(e.user(b.ID, "admin@b.example.org", shared.RoleTenantAdmin), nil)
	_, err = e.svc.CollectionEndpoint(other, c.ID)
	wantCode(t, "another tenant", err, shared.CodeNotFound)
}

func TestHealthByCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.tenant("hc-a", 0)
	in := collectionInput(a.ID, "hc-coll")
	in.HealthCode = "s3cret-health"
	if _, err := e.svc.CreateCollection(e.root, in); err != nil {
		t.Fatal(err)
	}
	e.collection(a.ID, "hc-nocode")
	for _, tc := range []struct{ name, id, code string }{
		{"wrong code", "hc-coll", "nope"},
		{"empty code", "hc-coll", ""},
		{"no code configured", "hc-nocode", "s3cret-health"},
		{"unknown collection", "hc-missing", "s3cret-health"},
		{"bad id", "../etc", "s3cret-health"},
	} {
		_, err := e.svc.HealthByCode(t.Context(), tc.id, tc.code)
		wantCode(t, tc.name, err, shared.CodeForbidden)
	}
	h, err := e.svc.HealthByCode(t.Context(), "hc-coll", "s3cret-health")
	if err != nil || !h.Healthy {
		t.Fatalf("empty collection: %+v, %v", h, err)
	}
	e.version("hc-coll", 1, 2e6, time.Now()) // above maxOneVersionSize (1 MB): soft limit fails
	h, err = e.svc.HealthByCode(t.Context(), "hc-coll", "s3cret-health")
	if err != nil || h.Healthy || h.SoftLimitOK || !h.HardLimitOK || h.NewestVersionAge == nil {
		t.Fatalf("oversized version: %+v, %v", h, err)
	}
}
