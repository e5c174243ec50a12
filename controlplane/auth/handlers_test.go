package auth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"backuprepo/controlplane/postgres/pgtest"
	"backuprepo/shared"
)

type answer struct {
	Status bool            `json:"status"`
	Data   json.RawMessage `json:"data"`
	Error  string          `json:"error"`
	Code   string          `json:"code"`
}

type client struct {
	t   *testing.T
	url string
}

func newServer(t *testing.T, s *Service) client {
	t.Helper()
	r := chi.NewRouter()
	r.Use(s.Middleware)
	s.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return client{t: t, url: srv.URL}
}

func (c client) do(method, path, contentType, body, bearer string, hdr ...string) (*http.Response, answer) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		c.t.Fatalf("%s %s: body %q is not an envelope: %v", method, path, b, err)
	}
	return resp, a
}

func (c client) login(email, password string) (token, session string) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": email, "password": password})
	resp, a := c.do("POST", "/api/stable/auth/login", "application/json", string(body), "")
	if resp.StatusCode != 200 || !a.Status {
		c.t.Fatalf("login: %d %+v", resp.StatusCode, a)
	}
	var d loginAnswer
	if err := json.Unmarshal(a.Data, &d); err != nil {
		c.t.Fatal(err)
	}
	return d.Token, d.SessionID
}

func wantStatus(t *testing.T, what string, resp *http.Response, a answer, status int, code shared.Code) {
	t.Helper()
	if resp.StatusCode != status || a.Status || a.Code != string(code) || a.Error == "" {
		t.Errorf("%s: got %d %+v, want %d %s", what, resp.StatusCode, a, status, code)
	}
}

func TestLoginHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(t, nil)
	c := newServer(t, s)
	u := e.user(t, nil)

	body := `{"username":"` + u.Email + `","password":"` + testPassword + `"}`
	resp, a := c.do("POST", "/api/stable/auth/login", "application/json; charset=utf-8", body, "")
	if resp.StatusCode != 200 || !a.Status {
		t.Fatalf("JSON login: %d %+v", resp.StatusCode, a)
	}
	var d loginAnswer
	if err := json.Unmarshal(a.Data, &d); err != nil {
		t.Fatal(err)
	}
	exp, err := time.Parse(time.RFC3339, d.Expire)
	if err != nil || d.Token == "" || d.SessionID == "" || exp.Before(time.Now().Add(59*time.Minute)) {
		t.Errorf("login data = %+v (expire parse: %v)", d, err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q; a token answer must not be cached", cc)
	}

	form := url.Values{"username": {u.Email}, "password": {testPassword}}.Encode()
	resp, a = c.do("POST", "/api/stable/auth/login", "application/x-www-form-urlencoded", form, "")
	if resp.StatusCode != 200 || !a.Status {
		t.Errorf("form login: %d %+v", resp.StatusCode, a)
	}

	bad := []struct {
		what, ct, body string
		status         int
		code           shared.Code
	}{
		{"wrong password", "application/json", `{"username":"` + u.Email + `","password":"wrong password!"}`, 401, shared.CodeInvalidCredentials},
		{"unknown user", "application/json", `{"username":"nobody@example.org","password":"` + testPassword + `"}`, 401, shared.CodeInvalidCredentials},
		{"malformed JSON", "application/json", `{"username":`, 400, shared.CodeInvalidInput},
		{"not an object", "application/json", `["a","b"]`, 400, shared.CodeInvalidInput},
		{"trailing data", "application/json", `{"username":"a","password":"b"} {}`, 400, shared.CodeInvalidInput},
		{"unknown JSON field", "application/json", `{"username":"a","password":"b","admin":true}`, 400, shared.CodeInvalidInput},
		{"wrong type", "application/json", `{"username":1,"password":"b"}`, 400, shared.CodeInvalidInput},
		{"empty body", "application/json", ``, 400, shared.CodeInvalidInput},
		{"missing password", "application/json", `{"username":"a"}`, 400, shared.CodeInvalidInput},
		{"unknown form field", "application/x-www-form-urlencoded", "username=a&password=b&x=1", 400, shared.CodeInvalidInput},
		{"repeated form field", "application/x-www-form-urlencoded", "username=a&password=b&password=c", 400, shared.CodeInvalidInput},
		{"malformed form", "application/x-www-form-urlencoded", "username=%zz", 400, shared.CodeInvalidInput},
		{"wrong content type", "text/plain", "username=a&password=b", 415, shared.CodeUnsupportedMediaType},
		{"no content type", "", `{"username":"a","password":"b"}`, 415, shared.CodeUnsupportedMediaType},
		{"garbage content type", ";;;", `{}`, 415, shared.CodeUnsupportedMediaType},
		{"oversized JSON", "application/json", `{"username":"` + strings.Repeat("a", maxLoginBody) + `","password":"b"}`, 413, shared.CodePayloadTooLarge},
		{"oversized form", "application/x-www-form-urlencoded", "username=" + strings.Repeat("a", maxLoginBody), 413, shared.CodePayloadTooLarge},
	}
	for _, b := range bad {
		resp, a := c.do("POST", "/api/stable/auth/login", b.ct, b.body, "")
		wantStatus(t, b.what, resp, a, b.status, b.code)
	}
}

func TestLoginHandlerRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(t, func(c *Config) { c.LoginLimit = 2; c.LoginWindow = 20 * time.Second })
	c := newServer(t, s)
	u := e.user(t, nil)
	body := `{"username":"` + u.Email + `","password":"wrong password!"}`
	for range 2 {
		resp, a := c.do("POST", "/api/stable/auth/login", "application/json", body, "")
		wantStatus(t, "wrong password", resp, a, 401, shared.CodeInvalidCredentials)
	}
	resp, a := c.do("POST", "/api/stable/auth/login", "application/json", body, "")
	wantStatus(t, "over the limit", resp, a, 429, shared.CodeRateLimited)
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > 20 {
		t.Errorf("Retry-After = %q, want 1..20 seconds", resp.Header.Get("Retry-After"))
	}
}

func TestWhoamiAndLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(t, nil)
	c := newServer(t, s)
	tenant := e.tenant(t, false)
	u := e.user(t, func(u *shared.User) { u.TenantID = tenant; u.Roles = []shared.Role{shared.RoleTenantAdmin} })
	other := e.user(t, nil)

	resp, a := c.do("GET", "/api/stable/auth/whoami", "", "", "")
	wantStatus(t, "whoami without token", resp, a, 401, shared.CodeUnauthenticated)
	resp, a = c.do("GET", "/api/stable/auth/whoami", "", "", "not.a.token")
	wantStatus(t, "whoami with garbage", resp, a, 401, shared.CodeUnauthenticated)
	resp, a = c.do("GET", "/api/stable/auth/whoami", "", "", "", "Authorization", "Bearer")
	wantStatus(t, "empty bearer", resp, a, 401, shared.CodeUnauthenticated)

	tokA, sessA := c.login(u.Email, testPassword)
	tokB, sessB := c.login(u.Email, testPassword)
	tokO, sessO := c.login(other.Email, testPassword)

	resp, a = c.do("GET", "/api/stable/auth/whoami", "", "", tokA)
	if resp.StatusCode != 200 {
		t.Fatalf("whoami: %d %+v", resp.StatusCode, a)
	}
	var w whoamiAnswer
	if err := json.Unmarshal(a.Data, &w); err != nil {
		t.Fatal(err)
	}
	if w.User.ID != u.ID || w.User.Email != u.Email || w.TenantID == nil || *w.TenantID != tenant ||
		len(w.Roles) != 1 || w.Roles[0] != shared.RoleTenantAdmin || w.TokenID != sessA || w.SessionID != sessA || w.Expire == "" {
		t.Errorf("whoami = %+v", w)
	}

	// Someone else's session, a made-up one and a malformed id are all NOT_FOUND, and the
	// other user's token keeps working.
	for _, id := range []string{sessO, "00000000-0000-0000-0000-000000000000", "../../x"} {
		resp, a = c.do("DELETE", "/api/stable/auth/logout?sessionId="+url.QueryEscape(id), "", "", tokA)
		wantStatus(t, "logout of "+id, resp, a, 404, shared.CodeNotFound)
	}
	if resp, _ := c.do("GET", "/api/stable/auth/whoami", "", "", tokO); resp.StatusCode != 200 {
		t.Errorf("another user's token stopped working: %d", resp.StatusCode)
	}

	// Logging out another own session revokes it, not the calling token.
	resp, a = c.do("DELETE", "/api/stable/auth/logout?sessionId="+sessB, "", "", tokA)
	if resp.StatusCode != 200 || !a.Status {
		t.Fatalf("logout of own other session: %d %+v", resp.StatusCode, a)
	}
	resp, a = c.do("GET", "/api/stable/auth/whoami", "", "", tokB)
	wantStatus(t, "revoked session", resp, a, 401, shared.CodeTokenRevoked)
	if resp, _ := c.do("GET", "/api/stable/auth/whoami", "", "", tokA); resp.StatusCode != 200 {
		t.Errorf("calling token stopped working after revoking another session: %d", resp.StatusCode)
	}

	// Plain logout revokes the calling token, on this replica and on another one.
	resp, a = c.do("DELETE", "/api/stable/auth/logout", "", "", tokA)
	if resp.StatusCode != 200 || !a.Status {
		t.Fatalf("logout: %d %+v", resp.StatusCode, a)
	}
	resp, a = c.do("GET", "/api/stable/auth/whoami", "", "", tokA)
	wantStatus(t, "after logout", resp, a, 401, shared.CodeTokenRevoked)
	replica := newServer(t, e.service(t, nil))
	resp, a = replica.do("GET", "/api/stable/auth/whoami", "", "", tokA)
	wantStatus(t, "after logout, other replica", resp, a, 401, shared.CodeTokenRevoked)
	resp, a = c.do("DELETE", "/api/stable/auth/logout", "", "", "")
	wantStatus(t, "logout without token", resp, a, 401, shared.CodeUnauthenticated)
}

func TestScopedTokenMayOnlyRevokeItself(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.service(t, nil)
	c := newServer(t, s)
	u := e.user(t, nil)
	_, sess := c.login(u.Email, testPassword)
	scoped, err := s.Issue(t.Context(), u, shared.TokenRequest{
		Scope: []shared.ScopeEntry{{Collection: "c1", Roles: []shared.Role{shared.RoleBackupUploader}}}}, pgtest.IssueEvent)
	if err != nil {
		t.Fatal(err)
	}
	resp, a := c.do("DELETE", "/api/stable/auth/logout?sessionId="+sess, "", "", scoped.Token)
	wantStatus(t, "scoped token revoking a full session", resp, a, 403, shared.CodeForbidden)
	resp, a = c.do("DELETE", "/api/stable/auth/logout?sessionId="+scoped.Record.ID, "", "", scoped.Token)
	if resp.StatusCode != 200 || !a.Status {
		t.Errorf("scoped token revoking itself: %d %+v", resp.StatusCode, a)
	}
}

func TestMiddlewareIPChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	u := e.user(t, func(u *shared.User) { u.AllowedIPs = []string{"198.51.100.0/24"} })

	// Behind a trusted proxy (the test client connects from 127.0.0.1), the forwarded address
	// decides; without the trust, the header is ignored and the peer address is used.
	trusting := newServer(t, e.service(t, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}))
	plain := newServer(t, e.service(t, nil))

	body := `{"username":"` + u.Email + `","password":"` + testPassword + `"}`
	resp, a := plain.do("POST", "/api/stable/auth/login", "application/json", body, "", "X-Forwarded-For", "198.51.100.7")
	wantStatus(t, "login with spoofed X-Forwarded-For", resp, a, 403, shared.CodeIPNotAllowed)
	resp, a = trusting.do("POST", "/api/stable/auth/login", "application/json", body, "", "X-Forwarded-For", "198.51.100.7")
	if resp.StatusCode != 200 {
		t.Fatalf("login through trusted proxy: %d %+v", resp.StatusCode, a)
	}
	var d loginAnswer
	if err := json.Unmarshal(a.Data, &d); err != nil {
		t.Fatal(err)
	}
	if resp, _ := trusting.do("GET", "/api/stable/auth/whoami", "", "", d.Token, "X-Forwarded-For", "198.51.100.8"); resp.StatusCode != 200 {
		t.Errorf("whoami from an allowed IP: %d", resp.StatusCode)
	}
	resp, a = trusting.do("GET", "/api/stable/auth/whoami", "", "", d.Token, "X-Forwarded-For", "203.0.113.1")
	wantStatus(t, "whoami from a refused IP", resp, a, 403, shared.CodeIPNotAllowed)
	resp, a = plain.do("GET", "/api/stable/auth/whoami", "", "", d.Token, "X-Forwarded-For", "198.51.100.8")
	wantStatus(t, "whoami with spoofed header", resp, a, 403, shared.CodeIPNotAllowed)
}
