package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"backuprepo/shared"
)

// The handler tests below send requests that are refused before any resolver runs, or that
// only touch __typename and introspection, so the services can stay nil.

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func do(t *testing.T, h http.Handler, r *http.Request) (int, gqlResponse, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var resp gqlResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, rec.Body.String())
	}
	return rec.Code, resp, rec.Body.String()
}

func post(t *testing.T, h http.Handler, query string) (int, gqlResponse, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": query})
	r := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return do(t, h, r)
}

func wantCode(t *testing.T, resp gqlResponse, raw string, code shared.Code) {
	t.Helper()
	if len(resp.Errors) == 0 {
		t.Fatalf("no error, want %s: %s", code, raw)
	}
	if got := resp.Errors[0].Extensions["code"]; got != string(code) {
		t.Fatalf("extensions.code = %v, want %s: %s", got, code, raw)
	}
}

func TestHandlerRefusesExpensiveQueries(t *testing.T) {
	t.Parallel()
	var aliases strings.Builder
	aliases.WriteString("{")
	for i := range 3000 {
		fmt.Fprintf(&aliases, " a%d: __typename", i)
	}
	aliases.WriteString(" }")

	// Ten distinct fields, multiplied by ten at each level: 10,000 fields from a short text.
	bomb := `
		query { ...F3 }
		fragment F0 on Query { a: __typename b: __typename c: __typename d: __typename e: __typename
		  f: __typename g: __typename h: __typename i: __typename j: __typename }
		fragment F1 on Query { ...F0 ...F0 ...F0 ...F0 ...F0 ...F0 ...F0 ...F0 ...F0 ...F0 }
		fragment F2 on Query { ...F1 ...F1 ...F1 ...F1 ...F1 ...F1 ...F1 ...F1 ...F1 ...F1 }
		fragment F3 on Query { ...F2 ...F2 ...F2 ...F2 ...F2 ...F2 ...F2 ...F2 ...F2 ...F2 }`

	h := NewHandler(HandlerConfig{ComplexityLimit: 1000, MaxDepth: 4, MaxFields: 2000})
	tests := []struct {
		name, query, wantMsg string
	}{
		{"complexity", `{ collections(first: 500) { items { id description } } }`, "complexity"},
		{"depth", `{ collection(id: "c") { node { collections { node { name } } } } }`, "nested 5 levels"},
		{"depth through fragments", `{ ...Deep } fragment Deep on Query { collection(id: "c") { node { ... on DataNode { collections { node { name } } } } } }`, "nested 5 levels"},
		{"thousands of aliases", aliases.String(), "more than 2000 fields"},
		{"fragment bomb", bomb, "more than 2000 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, resp, raw := post(t, h, tt.query)
			if status != http.StatusOK {
				t.Errorf("status = %d, want 200 (gqlgen answers refused operations with 200)", status)
			}
			wantCode(t, resp, raw, shared.CodeQueryTooComplex)
			if !strings.Contains(resp.Errors[0].Message, tt.wantMsg) {
				t.Errorf("message = %q, want it to mention %q", resp.Errors[0].Message, tt.wantMsg)
			}
			if string(resp.Data) != "null" && len(resp.Data) != 0 {
				t.Errorf("data = %s, want none", resp.Data)
			}
		})
	}
}

func TestMeasure(t *testing.T) {
	t.Parallel()
	schema := NewExecutableSchema(Config{}).Schema()
	tests := []struct {
		query         string
		depth, fields int
	}{
		{`{ __typename }`, 1, 1},
		{`{ me { user { id email } tokenId } }`, 3, 5},
		{`{ a: me { tokenId } b: me { tokenId } }`, 2, 4},
		{`{ ...Q } fragment Q on Query { me { ... on Principal { user { id } } } }`, 3, 3},
		{`{ ...Q ...Q } fragment Q on Query { me { tokenId } }`, 2, 4},
		{`{ __schema { types { fields { type { ofType { ofType { name } } } } } } me { tokenId } }`, 2, 2},
	}
	for _, tt := range tests {
		doc, errs := gqlparser.LoadQuery(schema, tt.query)
		if errs != nil {
			t.Fatalf("%s: %v", tt.query, errs)
		}
		m := measurer{cap: 1 << 20, frags: map[string]measure{}}
		got := m.selectionSet(doc.Operations[0].SelectionSet)
		if got.depth != tt.depth || got.fields != tt.fields {
			t.Errorf("%s: depth %d fields %d, want %d and %d", tt.query, got.depth, got.fields, tt.depth, tt.fields)
		}
	}
}

func TestHandlerAcceptsQueriesAtTheLimits(t *testing.T) {
	t.Parallel()
	h := NewHandler(HandlerConfig{MaxDepth: 1, MaxFields: 3})
	status, resp, raw := post(t, h, `{ a: __typename b: __typename c: __typename }`)
	if status != http.StatusOK || len(resp.Errors) != 0 || string(resp.Data) != `{"a":"Query","b":"Query","c":"Query"}` {
		t.Fatalf("status %d: %s", status, raw)
	}
}

func TestIntrospectionGate(t *testing.T) {
	t.Parallel()
	type key struct{}
	allow := func(ctx context.Context) bool { return ctx.Value(key{}) == true }
	h := NewHandler(HandlerConfig{AllowIntrospection: allow})
	queries := []string{
		`{ __schema { queryType { name } } }`,
		`{ __type(name: "Tenant") { name } }`,
		`{ ...I } fragment I on Query { __schema { queryType { name } } }`,
	}
	for _, q := range queries {
		_, resp, raw := post(t, h, q)
		wantCode(t, resp, raw, shared.CodeForbidden)
	}

	body, _ := json.Marshal(map[string]string{"query": queries[0]})
	r := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r = r.WithContext(context.WithValue(r.Context(), key{}, true))
	_, resp, raw := do(t, h, r)
	if len(resp.Errors) != 0 || string(resp.Data) != `{"__schema":{"queryType":{"name":"Query"}}}` {
		t.Fatalf("allowed introspection failed: %s", raw)
	}

	// __typename is not introspection of the schema and stays open.
	_, resp, raw = post(t, NewHandler(HandlerConfig{}), `{ __typename }`)
	if len(resp.Errors) != 0 {
		t.Fatalf("__typename refused: %s", raw)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	t.Parallel()
	h := NewHandler(HandlerConfig{MaxBodyBytes: 4096})

	r := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(`{"query": "mutation { login(email: \"a\", password: \"hunter2-secret\") { token } }"`))
	r.Header.Set("Content-Type", "application/json")
	status, resp, raw := do(t, h, r)
	if status != http.StatusBadRequest {
		t.Errorf("malformed JSON: status %d, want 400", status)
	}
	wantCode(t, resp, raw, shared.CodeInvalidInput)
	if strings.Contains(raw, "hunter2") {
		t.Errorf("malformed JSON: the body is echoed back: %s", raw)
	}

	status, resp, raw = post(t, h, `{ tenants(first: 1) { nope } }`)
	if status != http.StatusUnprocessableEntity {
		t.Errorf("invalid query: status %d, want 422", status)
	}
	wantCode(t, resp, raw, shared.CodeInvalidInput)

	status, resp, raw = post(t, h, `{ tenants(`)
	if status != http.StatusUnprocessableEntity {
		t.Errorf("unparsable query: status %d, want 422", status)
	}
	wantCode(t, resp, raw, shared.CodeInvalidInput)

	status, resp, raw = post(t, h, `{ __typename }`+strings.Repeat(" ", 5000))
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413", status)
	}
	wantCode(t, resp, raw, shared.CodePayloadTooLarge)

	r = httptest.NewRequest(http.MethodGet, `/graphql?query=mutation{logout}`, nil)
	status, _, raw = do(t, h, r)
	if status == http.StatusOK {
		t.Errorf("mutation over GET accepted: %s", raw)
	}
}

func TestRecoverFunc(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	// A nil Sessions service makes the resolver panic, as a bug in a service would.
	h := NewHandler(HandlerConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	status, resp, raw := post(t, h, `{ me { tokenId } }`)
	if status != http.StatusOK {
		t.Errorf("status %d, want 200", status)
	}
	wantCode(t, resp, raw, shared.CodeInternal)
	if resp.Errors[0].Message != "internal error" || strings.Contains(raw, "nil pointer") {
		t.Errorf("panic details leaked: %s", raw)
	}
	if !strings.Contains(logs.String(), "nil pointer") {
		t.Errorf("panic not logged: %s", logs.String())
	}
}

func TestErrorPresenter(t *testing.T) {
	t.Parallel()
	withCode := func(msg, code string) *gqlerror.Error {
		return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": code}}
	}
	tests := []struct {
		name     string
		err      error
		wantCode shared.Code
		wantMsg  string
		wantLog  string
	}{
		{"application error", shared.Errorf(shared.CodeNotFound, "collection not found"), shared.CodeNotFound, "collection not found", ""},
		{"wrapped application error", fmt.Errorf("load collection: %w", shared.Errorf(shared.CodeForbidden, "no")), shared.CodeForbidden, "no", ""},
		{"application error with a cause", shared.Wrap(errors.New("pq: relation users"), shared.CodeConflict, "email taken"), shared.CodeConflict, "email taken", ""},
		{"resolver error inside a gqlerror", gqlerror.WrapPath(nil, shared.Errorf(shared.CodeNoCapacity, "no node has room")), shared.CodeNoCapacity, "no node has room", ""},
		{"internal application error", shared.Wrap(errors.New("dial tcp 10.0.0.5:5432"), shared.CodeInternal, "internal error"), shared.CodeInternal, "internal error", "10.0.0.5"},
		{"plain error", errors.New("ERROR: duplicate key value violates unique constraint \"users_email_key\""), shared.CodeInternal, "internal error", "users_email_key"},
		{"plain error inside a gqlerror", gqlerror.WrapPath(nil, errors.New("boom")), shared.CodeInternal, "internal error", "boom"},
		{"validation", withCode("Cannot query field \"nope\" on type \"Tenant\".", "GRAPHQL_VALIDATION_FAILED"), shared.CodeInvalidInput, "Cannot query field \"nope\" on type \"Tenant\".", ""},
		{"parse", withCode("Expected Name, found <EOF>", "GRAPHQL_PARSE_FAILED"), shared.CodeInvalidInput, "Expected Name, found <EOF>", ""},
		{"complexity", withCode("operation has complexity 9000, which exceeds the limit of 5000", "COMPLEXITY_LIMIT_EXCEEDED"), shared.CodeQueryTooComplex, "operation has complexity 9000, which exceeds the limit of 5000", ""},
		{"undecodable body", gqlerror.Errorf("json request body could not be decoded: unexpected EOF body:{\"password\":\"s3cret\""), shared.CodeInvalidInput, "request body is not valid JSON", ""},
		{"uncoded gqlgen error", gqlerror.Errorf("the requested element is null which the schema does not allow"), shared.CodeInternal, "internal error", "requested element is null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			present := errorPresenter(slog.New(slog.NewTextHandler(&logs, nil)))
			got := present(context.Background(), tt.err)
			if got.Message != tt.wantMsg || got.Extensions["code"] != string(tt.wantCode) {
				t.Errorf("got %q code %v, want %q code %s", got.Message, got.Extensions["code"], tt.wantMsg, tt.wantCode)
			}
			if len(got.Extensions) != 1 {
				t.Errorf("extensions = %v, want only the code", got.Extensions)
			}
			if tt.wantLog == "" && logs.Len() != 0 {
				t.Errorf("logged a caller error: %s", logs.String())
			}
			if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log %q does not hold the cause %q", logs.String(), tt.wantLog)
			}
		})
	}
}

func TestConsoleHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		base, want string
	}{
		{"https://assets.internal.example/npm/", "https://assets.internal.example/npm/graphiql@4.1.2/graphiql.min.js"},
		{"", "https://cdn.jsdelivr.net/npm/react@18.2.0/umd/react.production.min.js"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		ConsoleHandler("/graphql", tt.base).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/console", nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("base %q: status %d, page lacks %s", tt.base, rec.Code, tt.want)
		}
		if tt.base != "" && strings.Contains(body, "cdn.jsdelivr.net") {
			t.Errorf("base %q: page still loads from the public CDN", tt.base)
		}
	}
}
