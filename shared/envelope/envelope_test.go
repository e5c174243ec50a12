package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"backuprepo/shared"
)

// declaredCodes reads shared/errors.go and returns the value of every constant of type Code,
// so that a code added there without a mapping here fails TestStatusCoversEveryCode.
func declaredCodes(t *testing.T) []shared.Code {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../errors.go", nil, 0)
	if err != nil {
		t.Fatalf("parse errors.go: %v", err)
	}
	var codes []shared.Code
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("a Code constant is not a string literal: %T", v)
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("unquote %s: %v", lit.Value, err)
				}
				codes = append(codes, shared.Code(s))
			}
		}
	}
	return codes
}

func TestStatusCoversEveryCode(t *testing.T) {
	t.Parallel()
	codes := declaredCodes(t)
	if len(codes) < 29 {
		t.Fatalf("found only %d codes in errors.go; the parser walk is broken", len(codes))
	}
	for _, c := range codes {
		s, ok := status(c)
		if !ok {
			t.Errorf("code %s has no HTTP status in status()", c)
		}
		if s < 400 || s > 599 {
			t.Errorf("code %s maps to %d, not an error status", c, s)
		}
	}
	if _, ok := status("NO_SUCH_CODE"); ok {
		t.Error("status() claims to know an undeclared code")
	}
	if got := Status("NO_SUCH_CODE"); got != http.StatusInternalServerError {
		t.Errorf("Status(unknown) = %d, want 500", got)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	want := map[shared.Code]int{
		shared.CodeInvalidInput: 400, shared.CodeNotEncrypted: 400, shared.CodeEmptyBody: 400,
		shared.CodeChecksumMismatch: 400, shared.CodeUnauthenticated: 401, shared.CodeInvalidCredentials: 401,
		shared.CodeTokenRevoked: 401, shared.CodeTokenExpired: 401, shared.CodeForbidden: 403,
		shared.CodeIPNotAllowed: 403, shared.CodeTenantSuspended: 403, shared.CodeWindowClosed: 403,
		shared.CodeNotFound: 404, shared.CodeConflict: 409, shared.CodeUploadInProgress: 409,
		shared.CodeCollectionFull: 409, shared.CodeCollectionNotEmpty: 409, shared.CodeVersionTooLarge: 413,
		shared.CodeCollectionQuotaExceeded: 413, shared.CodeTenantQuotaExceeded: 413,
		shared.CodePayloadTooLarge: 413, shared.CodeUnsupportedMediaType: 415, shared.CodeRateLimited: 429,
		shared.CodeInsufficientStorage: 507, shared.CodeNoCapacity: 503, shared.CodeNodeUnavailable: 503, shared.CodeCollectionUnhealthy: 503, shared.CodeNodeSignatureInvalid: 401,
		shared.CodeDependencyUnavailable: 503, shared.CodeQueryTooComplex: 422, shared.CodeInternal: 500,
		shared.CodeVersionDamaged: 500,
	}
	for _, c := range declaredCodes(t) {
		w, ok := want[c]
		if !ok {
			t.Errorf("code %s is missing from this table", c)
			continue
		}
		if got := Status(c); got != w {
			t.Errorf("Status(%s) = %d, want %d", c, got, w)
		}
	}
}

func TestWriteData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		data   any
		body   string
	}{
		{200, map[string]any{"version": map[string]int{"number": 3}}, `{"status":true,"data":{"version":{"number":3}}}`},
		{201, struct {
			ID string `json:"id"`
		}{"x"}, `{"status":true,"data":{"id":"x"}}`},
		{200, nil, `{"status":true,"data":{}}`},
		{200, []int{}, `{"status":true,"data":[]}`},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		WriteData(rec, tt.status, tt.data)
		if rec.Code != tt.status {
			t.Errorf("status = %d, want %d", rec.Code, tt.status)
		}
		if got := strings.TrimSpace(rec.Body.String()); got != tt.body {
			t.Errorf("body = %s, want %s", got, tt.body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
			t.Errorf("Content-Length = %s, body is %d bytes", cl, rec.Body.Len())
		}
	}
}

func TestWriteDataUnencodable(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	WriteData(rec, 200, map[string]any{"c": make(chan int)})
	if rec.Code != 500 {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	if got := strings.TrimSpace(rec.Body.String()); got != `{"status":false,"error":"internal error","code":"INTERNAL"}` {
		t.Fatalf("body = %s", got)
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	secret := errors.New(`pq: duplicate key value violates unique constraint "users_email_key"`)
	tests := []struct {
		err    error
		status int
		body   string
	}{
		{shared.Errorf(shared.CodeNotFound, "collection not found"), 404,
			`{"status":false,"error":"collection not found","code":"NOT_FOUND"}`},
		{shared.Wrap(secret, shared.CodeConflict, "email already in use"), 409,
			`{"status":false,"error":"email already in use","code":"CONFLICT"}`},
		{fmt.Errorf("admit upload: %w", shared.Errorf(shared.CodeWindowClosed, "outside the backup window")), 403,
			`{"status":false,"error":"outside the backup window","code":"WINDOW_CLOSED"}`},
		{secret, 500, `{"status":false,"error":"internal error","code":"INTERNAL"}`},
		{shared.Errorf(shared.CodeRateLimited, `too many "attempts" <try later>`), 429,
			`{"status":false,"error":"too many \"attempts\" \u003ctry later\u003e","code":"RATE_LIMITED"}`},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		WriteError(rec, tt.err)
		if rec.Code != tt.status {
			t.Errorf("WriteError(%v) status = %d, want %d", tt.err, rec.Code, tt.status)
		}
		got := strings.TrimSpace(rec.Body.String())
		if got != tt.body {
			t.Errorf("WriteError(%v) body = %s, want %s", tt.err, got, tt.body)
		}
		if strings.Contains(got, "duplicate key") {
			t.Errorf("WriteError leaked the cause: %s", got)
		}
		env, err := Decode(strings.NewReader(rec.Body.String()))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if shared.ErrorCode(env.Err()) != shared.ErrorCode(tt.err) || shared.ErrorMessage(env.Err()) != env.Error {
			t.Errorf("Decode(...).Err() = %v, want code %s", env.Err(), shared.ErrorCode(tt.err))
		}
	}
}

func TestDecodeEnvelope(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	WriteData(rec, 200, map[string]string{"token": "abc"})
	env, err := Decode(rec.Body)
	if err != nil || !env.Status || env.Err() != nil || string(env.Data) != `{"token":"abc"}` {
		t.Fatalf("Decode = %+v, %v", env, err)
	}
	if _, err := Decode(strings.NewReader("<html>")); err == nil {
		t.Fatal("Decode of HTML succeeded")
	}
	// A failure envelope without a code is still a failure.
	env, _ = Decode(strings.NewReader(`{"status":false,"error":"boom"}`))
	if shared.ErrorCode(env.Err()) != shared.CodeInternal {
		t.Fatalf("Err() = %v, want INTERNAL", env.Err())
	}
}

type loginInput struct {
	Username string     `json:"username"`
	Password string     `json:"password"`
	Quota    int64      `json:"quota"`
	Tags     []string   `json:"tags"`
	Expires  *time.Time `json:"expires"`
	Nested   struct {
		Level int8 `json:"level"`
	} `json:"nested"`
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		max         int64
		code        shared.Code // "" = success
		mention     string
	}{
		{"ok", "application/json", `{"username":"a","password":"b","quota":5}`, 1024, "", ""},
		{"ok with charset", "application/json; charset=UTF-8", `{"username":"a"}`, 1024, "", ""},
		{"ok trailing whitespace", "application/json", "{\"username\":\"a\"}\n\t \n", 1024, "", ""},
		{"ok exactly at the limit", "application/json", `{"username":"abcd"}`, 19, "", ""},
		{"default limit", "application/json", `{"username":"a"}`, 0, "", ""},
		{"no content type", "", `{}`, 1024, shared.CodeUnsupportedMediaType, "none was sent"},
		{"form", "application/x-www-form-urlencoded", `username=a`, 1024, shared.CodeUnsupportedMediaType, "application/x-www-form-urlencoded"},
		{"text", "text/plain", `{}`, 1024, shared.CodeUnsupportedMediaType, "text/plain"},
		{"bad media type", "application/json; =", `{}`, 1024, shared.CodeUnsupportedMediaType, "must be application/json"},
		{"latin1", "application/json; charset=latin1", `{}`, 1024, shared.CodeUnsupportedMediaType, "UTF-8"},
		{"too big", "application/json", `{"username":"` + strings.Repeat("a", 2000) + `"}`, 1024, shared.CodePayloadTooLarge, "larger than 1024 bytes"},
		{"one over the limit", "application/json", `{"username":"abcd"}`, 18, shared.CodePayloadTooLarge, "larger than 18 bytes"},
		{"too big after the value", "application/json", `{"username":"a"}` + strings.Repeat(" ", 2000), 1024, shared.CodePayloadTooLarge, "larger than"},
		{"empty", "application/json", ``, 1024, shared.CodeInvalidInput, "empty"},
		{"whitespace only", "application/json", "  \n", 1024, shared.CodeInvalidInput, "empty"},
		{"truncated", "application/json", `{"username":"a`, 1024, shared.CodeInvalidInput, "ends in the middle"},
		{"syntax", "application/json", `{"username" "a"}`, 1024, shared.CodeInvalidInput, "malformed JSON at byte"},
		{"trailing comma", "application/json", `{"username":"a",}`, 1024, shared.CodeInvalidInput, "malformed JSON"},
		{"unknown field", "application/json", `{"username":"a","admin":true}`, 1024, shared.CodeInvalidInput, `unknown field "admin"`},
		{"wrong type", "application/json", `{"quota":"5GB"}`, 1024, shared.CodeInvalidInput, `field "quota" must be an integer that fits int64, not a JSON string`},
		{"overflow", "application/json", `{"nested":{"level":300}}`, 1024, shared.CodeInvalidInput, `field "nested.level" must be an integer that fits int8`},
		{"fraction", "application/json", `{"quota":1.5}`, 1024, shared.CodeInvalidInput, `field "quota" must be an integer`},
		{"array for string", "application/json", `{"username":["a"]}`, 1024, shared.CodeInvalidInput, `field "username" must be a string, not a JSON array`},
		{"array body", "application/json", `[1,2]`, 1024, shared.CodeInvalidInput, `the body must be an object, not a JSON array`},
		{"bad time", "application/json", `{"expires":"tomorrow"}`, 1024, shared.CodeInvalidInput, `invalid JSON value`},
		{"two values", "application/json", `{"username":"a"}{"username":"b"}`, 1024, shared.CodeInvalidInput, "single JSON value"},
		{"trailing garbage", "application/json", `{"username":"a"} x`, 1024, shared.CodeInvalidInput, "single JSON value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/api/stable/auth/login", strings.NewReader(tt.body))
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			var v loginInput
			err := DecodeJSON(httptest.NewRecorder(), r, &v, tt.max)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				if v.Username == "" {
					t.Fatalf("DecodeJSON left the value empty: %+v", v)
				}
				return
			}
			var se *shared.Error
			if !errors.As(err, &se) {
				t.Fatalf("DecodeJSON = %v, want a *shared.Error %s", err, tt.code)
			}
			if se.Code != tt.code || !strings.Contains(se.Message, tt.mention) {
				t.Fatalf("DecodeJSON = %s %q, want %s mentioning %q", se.Code, se.Message, tt.code, tt.mention)
			}
		})
	}
}

func TestDecodeJSONProgrammingError(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`))
	r.Header.Set("Content-Type", "application/json")
	var v loginInput
	err := DecodeJSON(httptest.NewRecorder(), r, v, 1024) // not a pointer
	if err == nil || shared.ErrorCode(err) != shared.CodeInternal {
		t.Fatalf("DecodeJSON into a non-pointer = %v, want an internal error", err)
	}
}

// TestOverHTTP runs a real server so that MaxBytesReader's effect on the connection and the
// envelope written for a too-large body are seen by a client.
func TestOverHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v loginInput
		if err := DecodeJSON(w, r, &v, 64); err != nil {
			WriteError(w, err)
			return
		}
		WriteData(w, http.StatusOK, map[string]string{"hello": v.Username})
	}))
	defer srv.Close()

	post := func(ct, body string) (int, Envelope) {
		t.Helper()
		resp, err := http.Post(srv.URL, ct, strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		env, err := Decode(resp.Body)
		if err != nil {
			t.Fatalf("decode answer: %v", err)
		}
		return resp.StatusCode, env
	}
	if code, env := post("application/json", `{"username":"ada"}`); code != 200 || string(env.Data) != `{"hello":"ada"}` {
		t.Errorf("ok: %d %+v", code, env)
	}
	if code, env := post("application/json", strings.Repeat(" ", 100)+`{}`); code != 413 || env.Code != shared.CodePayloadTooLarge {
		t.Errorf("too big: %d %+v", code, env)
	}
	if code, env := post("text/plain", `{}`); code != 415 || env.Code != shared.CodeUnsupportedMediaType {
		t.Errorf("text: %d %+v", code, env)
	}
	if code, env := post("application/json", `{"password":1}`); code != 400 || env.Code != shared.CodeInvalidInput || env.Status {
		t.Errorf("bad type: %d %+v", code, env)
	}
	var raw map[string]any
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`nope`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	// The exact keys of SPEC §4: status, error, code and nothing else.
	if len(raw) != 3 || raw["status"] != false || raw["code"] != "INVALID_INPUT" || raw["error"] == "" {
		t.Errorf("failure envelope = %v", raw)
	}
}
