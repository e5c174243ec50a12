package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"backuprepo/shared/envelope"
)

// helperTimeout bounds one administrative call of a test helper.
const helperTimeout = 30 * time.Second

// GraphQLError is the first error of a GraphQL answer, with its machine code.
type GraphQLError struct {
	Message string
	Code    string // extensions.code
	Path    []any
	Others  int // how many more errors the answer held
}

func (e *GraphQLError) Error() string {
	msg := fmt.Sprintf("graphql: %s (code %s, path %v)", e.Message, e.Code, e.Path)
	if e.Others > 0 {
		msg += fmt.Sprintf(" and %d more errors", e.Others)
	}
	return msg
}

// GraphQL posts query with vars to /graphql as the bearer of token and decodes data into out
// (which may be nil). A GraphQL error comes back as *GraphQLError.
func (s *Stack) GraphQL(ctx context.Context, token, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return fmt.Errorf("encode graphql request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("graphql request: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read graphql answer: %w", err)
	}
	var ans struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string         `json:"message"`
			Path       []any          `json:"path"`
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return fmt.Errorf("graphql answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	if len(ans.Errors) > 0 {
		e := ans.Errors[0]
		code, _ := e.Extensions["code"].(string)
		return &GraphQLError{Message: e.Message, Code: code, Path: e.Path, Others: len(ans.Errors) - 1}
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("graphql answered %d without errors: %q", resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(ans.Data, out); err != nil {
			return fmt.Errorf("decode graphql data: %w", err)
		}
	}
	return nil
}

// Login logs in through POST /api/stable/auth/login and returns the token. Logins are
// rate-limited per IP: prefer IssueToken for test users.
func (s *Stack) Login(ctx context.Context, email, password string) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": email, "password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/api/stable/auth/login", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	defer resp.Body.Close()
	env, _, err := readEnvelope(resp)
	if err != nil {
		return "", err
	}
	if err := env.Err(); err != nil {
		return "", fmt.Errorf("login answered %d: %w", resp.StatusCode, err)
	}
	var data struct{ Token string }
	if err := json.Unmarshal(env.Data, &data); err != nil || data.Token == "" {
		return "", fmt.Errorf("login answer holds no token: %s", env.Data)
	}
	return data.Token, nil
}

// mustGraphQL runs an admin GraphQL call and fails the test on any error.
func (s *Stack) mustGraphQL(t testing.TB, query string, vars map[string]any, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	if err := s.GraphQL(ctx, s.AdminToken, query, vars, out); err != nil {
		t.Fatalf("%v\nquery: %s\nvariables: %v", err, strings.Join(strings.Fields(query), " "), vars)
	}
}

// CreateTenant creates a tenant as the system admin; name and slug are generated unless in
// has them. It returns the tenant's id.
func (s *Stack) CreateTenant(t testing.TB, in map[string]any) string {
	t.Helper()
	in = copyMap(in)
	slug := "t-" + randomText(10)
	if _, ok := in["slug"]; !ok {
		in["slug"] = slug
	}
	if _, ok := in["name"]; !ok {
		in["name"] = "Tenant " + slug
	}
	var out struct{ CreateTenant struct{ ID string } }
	s.mustGraphQL(t, `mutation($in: CreateTenantInput!) { createTenant(input: $in) { id } }`, map[string]any{"in": in}, &out)
	return out.CreateTenant.ID
}

// UpdateTenant applies in (UpdateTenantInput) to a tenant as the system admin.
func (s *Stack) UpdateTenant(t testing.TB, id string, in map[string]any) {
	t.Helper()
	s.mustGraphQL(t, `mutation($id: ID!, $in: UpdateTenantInput!) { updateTenant(id: $id, input: $in) { id } }`,
		map[string]any{"id": id, "in": in}, nil)
}

// User is a user the harness created, with its password.
type User struct {
	ID, Email, Password string
}

// CreateUser creates a user of tenantID with roles (names of the GraphQL Role enum).
func (s *Stack) CreateUser(t testing.TB, tenantID string, roles ...string) User {
	t.Helper()
	u := User{Email: "u-" + randomText(10) + "@example.org", Password: randomText(20)}
	in := map[string]any{"email": u.Email, "password": u.Password, "roles": append([]string{}, roles...)}
	if tenantID != "" {
		in["tenantId"] = tenantID
	}
	var out struct{ CreateUser struct{ ID string } }
	s.mustGraphQL(t, `mutation($in: CreateUserInput!) { createUser(input: $in) { id } }`, map[string]any{"in": in}, &out)
	u.ID = out.CreateUser.ID
	return u
}

// CreateCollection creates a collection from in (CreateCollectionInput) as the system admin
// and returns its id and the data node it was placed on.
func (s *Stack) CreateCollection(t testing.TB, in map[string]any) (id, node string) {
	t.Helper()
	var out struct {
		CreateCollection struct {
			Collection struct{ ID string }
			NodeName   string
		}
	}
	s.mustGraphQL(t, `mutation($in: CreateCollectionInput!) {
		createCollection(input: $in) { collection { id } nodeName } }`, map[string]any{"in": in}, &out)
	return out.CreateCollection.Collection.ID, out.CreateCollection.NodeName
}

// TokenOptions narrow an issued token.
type TokenOptions struct {
	TTL   string           // Duration scalar ("1h", "30d"); empty for the default
	Scope []map[string]any // ScopeEntryInput values: {"collection": id, "roles": [...]}
	Once  bool             // upload-only, revoked after its first successful upload
}

// Token is an issued token and its id (jti).
type Token struct {
	Token, ID string
}

// IssueToken issues a token for userID as the system admin.
func (s *Stack) IssueToken(t testing.TB, userID string, o TokenOptions) Token {
	t.Helper()
	vars := map[string]any{"u": userID, "once": o.Once}
	if o.TTL != "" {
		vars["ttl"] = o.TTL
	}
	if o.Scope != nil {
		vars["scope"] = o.Scope
	}
	var out struct {
		IssueToken struct {
			Token  string
			Record struct{ ID string }
		}
	}
	s.mustGraphQL(t, `mutation($u: ID, $ttl: Duration, $scope: [ScopeEntryInput!], $once: Boolean) {
		issueToken(userId: $u, description: "e2e", ttl: $ttl, scope: $scope, once: $once) { token record { id } } }`, vars, &out)
	return Token{Token: out.IssueToken.Token, ID: out.IssueToken.Record.ID}
}

// RevokeToken revokes the token with id (jti) as the system admin.
func (s *Stack) RevokeToken(t testing.TB, id string) {
	t.Helper()
	s.mustGraphQL(t, `mutation($id: ID!) { revokeToken(id: $id) { id } }`, map[string]any{"id": id}, nil)
}

// Uploader creates a tenant user holding roles and returns a token of theirs; the common
// start of a test that uploads as a client.
func (s *Stack) Uploader(t testing.TB, tenantID string, roles ...string) (User, Token) {
	t.Helper()
	u := s.CreateUser(t, tenantID, roles...)
	return u, s.IssueToken(t, u.ID, TokenOptions{})
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// readEnvelope reads a REST answer's body and decodes its envelope.
func readEnvelope(resp *http.Response) (envelope.Envelope, []byte, error) {
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return envelope.Envelope{}, raw, fmt.Errorf("read answer: %w", err)
	}
	var env envelope.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return envelope.Envelope{}, raw, fmt.Errorf("answer %d is not an envelope: %q", resp.StatusCode, raw)
	}
	return env, raw, nil
}
