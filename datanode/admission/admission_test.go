package admission_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"backuprepo/datanode/admission"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

var secret = []byte("0123456789abcdef-node-secret")

// server answers internal API calls with handle after checking the node signature the way the
// control plane must.
func server(t *testing.T, handle func(w http.ResponseWriter, path string, body []byte)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		node, err := internalapi.Verify(r, secret, body, time.Now())
		if err != nil || node != "node-a" || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(internalapi.ErrorBody{Code: shared.CodeUnauthenticated, Message: "bad node signature"})
			return
		}
		handle(w, r.URL.Path, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func client(t *testing.T, url string, key []byte, retry time.Duration) *admission.Client {
	t.Helper()
	c, err := admission.New(admission.Config{ControlPlaneURL: url, NodeName: "node-a", Secret: key, CommitRetryFor: retry})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSignedCallsAndAnswers(t *testing.T) {
	t.Parallel()
	srv, _ := server(t, func(w http.ResponseWriter, path string, body []byte) {
		switch path {
		case internalapi.PathAdmit:
			var req internalapi.AdmitRequest
			if err := json.Unmarshal(body, &req); err != nil || req.Token != "tok" || req.ClientIP != "192.0.2.1" || req.ContentLength != -1 {
				t.Errorf("admit request %s", body)
			}
			_ = json.NewEncoder(w).Encode(internalapi.AdmitResponse{UploadID: "u1", Allowance: 42, LimitCode: shared.CodeVersionTooLarge, ExtendEvery: time.Minute})
		case internalapi.PathList:
			_ = json.NewEncoder(w).Encode(internalapi.ListResponse{Versions: []shared.Version{{ID: "v2"}, {ID: "v1"}}})
		default:
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(internalapi.ErrorBody{Code: shared.CodeWindowClosed, Message: "the backup window is closed"})
		}
	})
	c := client(t, srv.URL, secret, time.Second)
	ctx := context.Background()
	adm, err := c.Admit(ctx, internalapi.AdmitRequest{Caller: internalapi.Caller{Token: "tok", ClientIP: "192.0.2.1"}, CollectionID: "c", ContentLength: -1})
	if err != nil || adm.UploadID != "u1" || adm.Allowance != 42 || adm.ExtendEvery != time.Minute {
		t.Fatalf("admit = %+v, %v", adm, err)
	}
	vs, err := c.List(ctx, internalapi.ListRequest{CollectionID: "c"})
	if err != nil || len(vs) != 2 || vs[0].ID != "v2" {
		t.Fatalf("list = %+v, %v", vs, err)
	}
	_, err = c.Resolve(ctx, internalapi.VersionRequest{CollectionID: "c", Ref: "latest"})
	var e *shared.Error
	if !errors.As(err, &e) || e.Code != shared.CodeWindowClosed || e.Message != "the backup window is closed" {
		t.Fatalf("refusal = %v", err)
	}
	if admission.Unavailable(err) {
		t.Fatal("a refusal is not unavailability")
	}
	if c.LastAnswer().IsZero() {
		t.Fatal("LastAnswer not recorded")
	}

	// A node with another secret is refused by the control plane.
	_, err = client(t, srv.URL, []byte("another-secret-of-16+"), time.Second).Admit(ctx, internalapi.AdmitRequest{})
	if shared.ErrorCode(err) != shared.CodeUnauthenticated {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv, _ := server(t, func(w http.ResponseWriter, _ string, _ []byte) {
		w.WriteHeader(http.StatusBadGateway) // a proxy in between, no error body
	})
	c := client(t, srv.URL, secret, time.Second)
	_, err := c.Outcome(context.Background(), "u1")
	if shared.ErrorCode(err) != shared.CodeDependencyUnavailable || !admission.Unavailable(err) {
		t.Fatalf("502: %v", err)
	}
	// /livez is not signed, so this server answers it 401: not live.
	if err := c.Ping(context.Background()); shared.ErrorCode(err) != shared.CodeDependencyUnavailable {
		t.Fatalf("ping answered 401: %v", err)
	}

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	c = client(t, closed.URL, secret, time.Second)
	_, err = c.Delete(context.Background(), internalapi.VersionRequest{})
	if shared.ErrorCode(err) != shared.CodeDependencyUnavailable || shared.ErrorMessage(err) != "the control plane is unavailable" {
		t.Fatalf("unreachable: %v", err)
	}
	if err := c.Ping(context.Background()); shared.ErrorCode(err) != shared.CodeDependencyUnavailable {
		t.Fatalf("ping unreachable: %v", err)
	}
}

func TestCommitRetries(t *testing.T) {
	t.Parallel()
	var fail atomic.Int64
	fail.Store(3)
	srv, calls := server(t, func(w http.ResponseWriter, _ string, body []byte) {
		if fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(internalapi.ErrorBody{Code: shared.CodeDependencyUnavailable, Message: "database down"})
			return
		}
		var req internalapi.CommitRequest
		_ = json.Unmarshal(body, &req)
		_ = json.NewEncoder(w).Encode(internalapi.CommitResponse{Version: shared.Version{ID: req.UploadID, Size: req.Size}})
	})
	c := client(t, srv.URL, secret, 10*time.Second)
	res, err := c.Commit(context.Background(), internalapi.CommitRequest{UploadID: "u1", Size: 7, SHA256: "00"})
	if err != nil || res.Version.ID != "u1" || calls.Load() != 4 {
		t.Fatalf("commit = %+v, %v after %d calls", res, err, calls.Load())
	}

	// Refusals are final.
	refusing, rcalls := server(t, func(w http.ResponseWriter, _ string, _ []byte) {
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(internalapi.ErrorBody{Code: shared.CodeConflict, Message: "upload expired"})
	})
	_, err = client(t, refusing.URL, secret, 10*time.Second).Commit(context.Background(), internalapi.CommitRequest{UploadID: "u1"})
	if shared.ErrorCode(err) != shared.CodeConflict || rcalls.Load() != 1 {
		t.Fatalf("refused commit: %v after %d calls", err, rcalls.Load())
	}

	// The retry budget ends.
	fail.Store(1 << 30)
	start := time.Now()
	_, err = client(t, srv.URL, secret, 500*time.Millisecond).Commit(context.Background(), internalapi.CommitRequest{UploadID: "u2"})
	if !admission.Unavailable(err) || time.Since(start) > 3*time.Second {
		t.Fatalf("exhausted commit: %v after %s", err, time.Since(start))
	}

	// A cancelled caller stops retrying.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := calls.Load()
	_, err = client(t, srv.URL, secret, 10*time.Second).Commit(ctx, internalapi.CommitRequest{UploadID: "u3"})
	if err == nil || calls.Load()-before > 1 {
		t.Fatalf("cancelled commit: %v, %d calls", err, calls.Load()-before)
	}
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []admission.Config{
		{ControlPlaneURL: "ftp://x", NodeName: "n", Secret: secret},
		{ControlPlaneURL: "http://x", Secret: secret},
		{ControlPlaneURL: "http://x", NodeName: "n", Secret: []byte("short")},
	} {
		if _, err := admission.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
