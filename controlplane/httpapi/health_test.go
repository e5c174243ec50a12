package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"backuprepo/shared"
)

func TestHealthHealthy(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)
	rec := api.do(t, http.MethodGet, "/health?code="+healthCode, nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Fatalf("Content-Type = %q", ct)
	}
	golden(t, "health_healthy.json", rec.Body.Bytes())
}

func TestHealthUnhealthy(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, func(c *Config) {
		c.DB = downDB(t)
		c.Redis = downRedis(t)
		c.Cluster = staticCluster{{Name: "n1", State: shared.NodeDead,
			Disks: []shared.Disk{{Path: "/srv/d1", Total: 1000, Free: 600}}}}
	})
	rec := api.do(t, http.MethodGet, "/health?code="+healthCode, nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503; body %s", rec.Code, rec.Body)
	}
	golden(t, "health_unhealthy.json", rec.Body.Bytes())
}

func TestHealthOneDependencyDown(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, c *Config)
		want healthStatus
	}{
		{"database", func(t *testing.T, c *Config) { c.DB = downDB(t) },
			healthStatus{Storage: true, Database: false, Redis: true, Cluster: true}},
		{"redis", func(t *testing.T, c *Config) { c.Redis = downRedis(t) },
			healthStatus{Storage: true, Database: true, Redis: false, Cluster: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newTestAPI(t, func(c *Config) { tc.edit(t, c) })
			rec := api.do(t, http.MethodGet, "/health?code="+healthCode, nil)
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("status = %d, want 503; body %s", rec.Code, rec.Body)
			}
			var got healthReport
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got.GlobalStatus || got.Status[0] != tc.want {
				t.Fatalf("got %+v, want status %+v and global false", got, tc.want)
			}
			msgs := map[string][]string{"database": got.Messages[0].Database, "redis": got.Messages[0].Redis}
			if want := []string{tc.name + " is unreachable"}; !reflect.DeepEqual(msgs[tc.name], want) {
				t.Fatalf("messages = %q, want %q", msgs[tc.name], want)
			}
		})
	}
}

func TestHealthCodeRefused(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)
	for _, target := range []string{
		"/health",
		"/health?code=",
		"/health?code=wrong",
		"/health?code=" + healthCode + "x",
		"/health?code=" + metricsCode,
	} {
		rec := api.do(t, http.MethodGet, target, nil)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s: status = %d, want 403", target, rec.Code)
		}
		assertEnvelopeError(t, rec.Body.Bytes(), shared.CodeForbidden)
	}
}

func TestCodeMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, want string
		ok        bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"ab", "abc", false},
		{"", "abc", false},
		{"", "", false}, // an empty configured code never opens the endpoint
	} {
		if got := codeMatches(tc.got, tc.want); got != tc.ok {
			t.Errorf("codeMatches(%q, %q) = %v, want %v", tc.got, tc.want, got, tc.ok)
		}
	}
}

func TestStorageAndClusterChecks(t *testing.T) {
	t.Parallel()
	disk := []shared.Disk{{Path: "/d", Total: 100, Free: 50}}
	for _, tc := range []struct {
		name             string
		nodes            []shared.DataNode
		storage, cluster []string
	}{
		{"one alive node", []shared.DataNode{{Name: "a", State: shared.NodeAlive, Disks: disk}}, nil, nil},
		{"no nodes", nil,
			[]string{"no data node accepts uploads (none is alive, not draining, with free space)"},
			[]string{"no live data node in the gossip cluster (0 known)"}},
		{"only draining", []shared.DataNode{{Name: "a", State: shared.NodeDraining, Disks: disk}},
			[]string{"no data node accepts uploads (none is alive, not draining, with free space)"}, nil},
		{"alive but full", []shared.DataNode{{Name: "a", State: shared.NodeAlive, Disks: []shared.Disk{{Path: "/d", Total: 100}}}},
			[]string{"no data node accepts uploads (none is alive, not draining, with free space)"}, nil},
		{"alive node without disks", []shared.DataNode{
			{Name: "a", State: shared.NodeAlive, Disks: disk},
			{Name: "b", State: shared.NodeAlive}},
			[]string{"data node b announced no disks"}, nil},
		{"draining node with an empty disk", []shared.DataNode{
			{Name: "a", State: shared.NodeAlive, Disks: disk},
			{Name: "b", State: shared.NodeDraining, Disks: []shared.Disk{{Path: "/x"}}}},
			[]string{"data node b: disk /x reports no capacity"}, nil},
		{"dead nodes are not checked", []shared.DataNode{
			{Name: "a", State: shared.NodeAlive, Disks: disk},
			{Name: "b", State: shared.NodeDead}},
			nil, nil},
		{"only suspect", []shared.DataNode{{Name: "a", State: shared.NodeSuspect, Disks: disk}},
			[]string{"no data node accepts uploads (none is alive, not draining, with free space)"},
			[]string{"no live data node in the gossip cluster (1 known)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := storageCheck(tc.nodes); !reflect.DeepEqual(got, tc.storage) {
				t.Errorf("storageCheck = %q, want %q", got, tc.storage)
			}
			if got := clusterCheck(tc.nodes); !reflect.DeepEqual(got, tc.cluster) {
				t.Errorf("clusterCheck = %q, want %q", got, tc.cluster)
			}
		})
	}
}

func assertEnvelopeError(t *testing.T, body []byte, code shared.Code) {
	t.Helper()
	var e struct {
		Status *bool       `json:"status"`
		Error  string      `json:"error"`
		Code   shared.Code `json:"code"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	if e.Status == nil || *e.Status || e.Code != code || e.Error == "" {
		t.Fatalf("answer %s, want an envelope error with code %s and a message", body, code)
	}
}
