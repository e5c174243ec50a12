package httpapi

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"backuprepo/shared"
)

func TestLivez(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, func(c *Config) { c.DB = downDB(t); c.Redis = downRedis(t) })
	rec := api.do(t, http.MethodGet, "/livez", nil)
	if rec.Code != http.StatusOK || rec.Body.String() != "{\"status\":true,\"data\":{\"alive\":true}}\n" {
		t.Fatalf("livez = %d %s, want 200 even with dependencies down", rec.Code, rec.Body)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		edit   func(t *testing.T, c *Config)
		status int
		msg    string
	}{
		{"all up", func(*testing.T, *Config) {}, http.StatusOK, ""},
		{"database down", func(t *testing.T, c *Config) { c.DB = downDB(t) }, http.StatusServiceUnavailable, "not ready: database is unreachable"},
		{"redis down", func(t *testing.T, c *Config) { c.Redis = downRedis(t) }, http.StatusServiceUnavailable, "not ready: redis is unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := newTestAPI(t, func(c *Config) { tc.edit(t, c) })
			rec := api.do(t, http.MethodGet, "/readyz", nil)
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status != http.StatusOK {
				assertEnvelopeError(t, rec.Body.Bytes(), shared.CodeDependencyUnavailable)
				if !strings.Contains(rec.Body.String(), tc.msg) {
					t.Fatalf("body %s does not say %q", rec.Body, tc.msg)
				}
			}
		})
	}
}

func TestUnknownRouteAndMethod(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)

	rec := api.do(t, http.MethodGet, "/no/such/thing", nil)
	if rec.Code != http.StatusNotFound {
		t.Fatalf("unknown route: status = %d, want 404", rec.Code)
	}
	assertEnvelopeError(t, rec.Body.Bytes(), shared.CodeNotFound)

	rec = api.do(t, http.MethodPut, "/graphql", nil)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("wrong method: status = %d, want 405", rec.Code)
	}
	assertEnvelopeError(t, rec.Body.Bytes(), shared.CodeInvalidInput)
	if allow := rec.Header().Get("Allow"); allow != "GET, POST" {
		t.Fatalf("Allow = %q, want %q", allow, "GET, POST")
	}
}

func TestRoutesAndAuthWrapping(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)
	for _, tc := range []struct {
		method, target string
		bearer         string
		status         int
		handler        string
		behindAuth     bool
	}{
		{http.MethodPost, "/api/stable/auth/login", "", http.StatusOK, "login", false},
		// A stale token must not stop a client from logging in again.
		{http.MethodPost, "/api/stable/auth/login", "Bearer bad", http.StatusOK, "login", false},
		{http.MethodGet, "/api/stable/auth/whoami", "Bearer ok", http.StatusOK, "whoami", true},
		{http.MethodGet, "/api/stable/auth/whoami", "Bearer bad", http.StatusUnauthorized, "", true},
		{http.MethodDelete, "/api/stable/auth/logout", "Bearer ok", http.StatusOK, "logout", true},
		{http.MethodDelete, "/api/stable/auth/logout", "Bearer bad", http.StatusUnauthorized, "", true},
		{http.MethodPost, "/graphql", "", http.StatusOK, "graphql", true},
		{http.MethodPost, "/graphql", "Bearer bad", http.StatusUnauthorized, "", true},
		{http.MethodGet, "/graphql?query={me{id}}", "Bearer ok", http.StatusOK, "graphql", true},
		{http.MethodGet, "/console", "", http.StatusOK, "console", false},
		{http.MethodGet, "/livez", "Bearer bad", http.StatusOK, "", false},
	} {
		req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(`{"a":1}`))
		if tc.bearer != "" {
			req.Header.Set("Authorization", tc.bearer)
		}
		rec := httptest.NewRecorder()
		api.handler.ServeHTTP(rec, req)
		if rec.Code != tc.status {
			t.Errorf("%s %s (%q): status = %d, want %d", tc.method, tc.target, tc.bearer, rec.Code, tc.status)
			continue
		}
		if tc.handler != "" && !strings.Contains(rec.Body.String(), `"handler":"`+tc.handler+`"`) {
			t.Errorf("%s %s: answered by %s, want %s", tc.method, tc.target, rec.Body, tc.handler)
		}
		if got := rec.Header().Get("X-Auth-Middleware") == "ran"; got != tc.behindAuth {
			t.Errorf("%s %s: behind the auth middleware = %v, want %v", tc.method, tc.target, got, tc.behindAuth)
		}
	}
}

func TestJSONBodyLimit(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)
	big := bytes.Repeat([]byte("a"), maxJSONBody+1)
	for _, tc := range []struct {
		name    string
		target  string
		chunked bool
	}{
		{"login by content-length", "/api/stable/auth/login", false},
		{"login chunked", "/api/stable/auth/login", true},
		{"graphql by content-length", "/graphql", false},
		{"graphql chunked", "/graphql", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader = bytes.NewReader(big)
			if tc.chunked {
				body = io.MultiReader(bytes.NewReader(big)) // hides the length
			}
			req := httptest.NewRequest(http.MethodPost, tc.target, body)
			if tc.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			api.handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %d, want 413; body %.200s", rec.Code, rec.Body)
			}
			assertEnvelopeError(t, rec.Body.Bytes(), shared.CodePayloadTooLarge)
		})
	}

	// Exactly at the limit passes and the handler reads it all.
	req := httptest.NewRequest(http.MethodPost, "/api/stable/auth/login", io.MultiReader(bytes.NewReader(big[:maxJSONBody])))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	api.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"read":1048576`) {
		t.Fatalf("body at the limit: %d %s", rec.Code, rec.Body)
	}
}

func TestPanicAnswers500(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	api := newTestAPI(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Console = http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	})
	rec := api.do(t, http.MethodGet, "/console", nil)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	assertEnvelopeError(t, rec.Body.Bytes(), shared.CodeInternal)
	if strings.Contains(rec.Body.String(), "boom") {
		t.Fatalf("the panic value leaked to the client: %s", rec.Body)
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Fatalf("the panic was not logged: %s", logs.String())
	}
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, nil)
	api.cfg.Metrics.UploadsInFlight.Inc()
	api.do(t, http.MethodGet, "/livez", nil)
	api.do(t, http.MethodGet, "/nope", nil)
	api.do(t, http.MethodPost, "/api/stable/auth/login", strings.NewReader(`{"username":"x"}`))

	rec := api.do(t, http.MethodGet, "/metrics", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`br_http_requests_total{code="200",method="GET",route="/livez"} 1`,
		`br_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`br_http_request_duration_seconds_bucket{code="200",method="GET",route="/livez",le="3600"} 1`,
		`br_http_request_bytes_total{route="/api/stable/auth/login"} 16`,
		`br_http_response_bytes_total{route="/livez"} 38`,
		`br_uploads_in_flight 1`,
		`br_node_free_bytes{node="n1"} 700`,
		`br_node_total_bytes{node="n1"} 3000`,
		`br_cluster_members{state="alive"} 1`,
		`br_cluster_members{state="dead"} 0`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	good := func() Config {
		m, err := NewMetrics(prometheus.NewRegistry(), staticCluster{})
		if err != nil {
			t.Fatalf("NewMetrics: %v", err)
		}
		return Config{
			Logger: slog.New(slog.DiscardHandler), BaseURL: "http://x", AppEnv: "dev",
			HealthCheckCode: "h", MetricsCode: "m", DB: downDB(t), Redis: downRedis(t),
			Cluster: staticCluster{}, Metrics: m, Auth: markingAuth{},
			Login: echo("l"), WhoAmI: echo("w"), Logout: echo("o"), GraphQL: echo("g"), Console: echo("c"),
		}
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("New(complete config) = %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"empty health code", func(c *Config) { c.HealthCheckCode = "" }, "HealthCheckCode"},
		{"empty metrics code", func(c *Config) { c.MetricsCode = "" }, "MetricsCode"},
		{"same codes", func(c *Config) { c.MetricsCode = c.HealthCheckCode }, "must differ"},
		{"no database", func(c *Config) { c.DB = nil }, "DB"},
		{"no graphql", func(c *Config) { c.GraphQL = nil }, "GraphQL"},
		{"no base url", func(c *Config) { c.BaseURL = "" }, "BaseURL"},
	} {
		cfg := good()
		tc.edit(&cfg)
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
