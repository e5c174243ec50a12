package httpapi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"backuprepo/shared"
)

// The seed's example line, byte for byte: an empty installation must produce exactly it.
const seedLine = "backup_repository_report,base_url=http://localhost:8000,app_env=dev storage_declared_space=0,storage_used_space=0,users_active_accounts=0,users_active_jwt_keys=0,backup_versions=0,backup_collections=0,resources_tags=0 1620237873872992246\n"

func TestInfluxEmptyMatchesSeed(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)
	rec := api.do(t, http.MethodGet, "/metrics/backup_repository_report/influxdb?code="+metricsCode, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type = %q", ct)
	}
	if rec.Body.String() != seedLine {
		t.Fatalf("line = %q\nwant   %q", rec.Body.String(), seedLine)
	}
}

func TestInfluxWithData(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, func(c *Config) { c.BaseURL = "https://backups.example.org"; c.AppEnv = "prod" })
	_, err := api.db.Pool.Exec(context.Background(), `
INSERT INTO tenants (id, name, slug) VALUES ('00000000-0000-0000-0000-0000000000a1', 'A', 'a');
INSERT INTO users (id, email, password_hash, tenant_id) VALUES
	('00000000-0000-0000-0000-000000000001', 'u1@x', 'h', '00000000-0000-0000-0000-0000000000a1'),
	('00000000-0000-0000-0000-000000000002', 'u2@x', 'h', NULL);
INSERT INTO tokens (id, user_id, expires_at) VALUES
	('00000000-0000-0000-0000-0000000000f1', '00000000-0000-0000-0000-000000000001', now() + interval '1 hour');
INSERT INTO collections (id, tenant_id, tags, max_backups_count, max_one_version_size, max_collection_size, strategy) VALUES
	('c1', '00000000-0000-0000-0000-0000000000a1', '{db,daily}', 2, 500, 4096, 'FIFO');
INSERT INTO versions (id, collection_id, number, filename, size, sha256, node_name) VALUES
	('00000000-0000-0000-0000-0000000000b1', 'c1', 1, 'backup-1', 123, repeat('a', 64), 'n1'),
	('00000000-0000-0000-0000-0000000000b2', 'c1', 2, 'backup-2', 456, repeat('b', 64), 'n1');`)
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	rec := api.do(t, http.MethodGet, "/metrics/backup_repository_report/influxdb?code="+metricsCode, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	golden(t, "influx_report.txt", rec.Body.Bytes())
}

func TestInfluxCodeRefused(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)
	for _, target := range []string{
		"/metrics/backup_repository_report/influxdb",
		"/metrics/backup_repository_report/influxdb?code=",
		"/metrics/backup_repository_report/influxdb?code=wrong",
		"/metrics/backup_repository_report/influxdb?code=" + healthCode, // the health code opens only /health
	} {
		rec := api.do(t, http.MethodGet, target, nil)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s: status = %d, want 403", target, rec.Code)
		}
		assertEnvelopeError(t, rec.Body.Bytes(), shared.CodeForbidden)
	}
}

func TestInfluxDatabaseDown(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, func(c *Config) { c.DB = downDB(t) })
	rec := api.do(t, http.MethodGet, "/metrics/backup_repository_report/influxdb?code="+metricsCode, nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", rec.Code)
	}
	assertEnvelopeError(t, rec.Body.Bytes(), shared.CodeDependencyUnavailable)
}

func TestInfluxLineEscaping(t *testing.T) {
	t.Parallel()
	at := time.Unix(0, 42)
	rep := shared.Report{StorageDeclaredSpace: 1, StorageUsedSpace: 2, UsersActiveAccounts: 3,
		UsersActiveJWTKeys: 4, BackupVersions: 5, BackupCollections: 6, ResourcesTags: 7}
	fields := " storage_declared_space=1,storage_used_space=2,users_active_accounts=3,users_active_jwt_keys=4,backup_versions=5,backup_collections=6,resources_tags=7 42\n"
	for _, tc := range []struct {
		baseURL, appEnv, tags string
	}{
		{"http://localhost:8000", "dev", "base_url=http://localhost:8000,app_env=dev"},
		{"http://my host,x", "dev", `base_url=http://my\ host\,x,app_env=dev`},
		{"http://h/?a=b", "pre prod", `base_url=http://h/?a\=b,app_env=pre\ prod`},
		{"a,b c=d", "x=y,z", `base_url=a\,b\ c\=d,app_env=x\=y\,z`},
	} {
		want := "backup_repository_report," + tc.tags + fields
		if got := influxLine(tc.baseURL, tc.appEnv, rep, at); got != want {
			t.Errorf("influxLine(%q, %q)\n got %q\nwant %q", tc.baseURL, tc.appEnv, got, want)
		}
	}
}
