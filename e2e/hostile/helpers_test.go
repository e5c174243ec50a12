package hostile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// answer is what a hostile request got back: status 0 means no HTTP answer at all (the
// connection was closed, by us or by the server).
type answer struct {
	Status int
	Code   string // the envelope's "code" or GraphQL's extensions.code
	Header http.Header
	Body   []byte
}

func (a answer) String() string {
	b := a.Body
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return fmt.Sprintf("%d %s %q", a.Status, a.Code, b)
}

// decode fills Code from a JSON envelope or a GraphQL answer's first error.
func (a *answer) decode() {
	var env struct {
		Code   string `json:"code"`
		Errors []struct {
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if json.Unmarshal(a.Body, &env) != nil {
		return
	}
	a.Code = env.Code
	if a.Code == "" && len(env.Errors) > 0 {
		a.Code, _ = env.Errors[0].Extensions["code"].(string)
	}
}

// hostOf is the host:port of a base URL.
func hostOf(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// raw sends head (request line and headers, without the blank line ending them, which raw
// adds) and body byte for byte on a new connection to base, and reads one answer. Go's client
// would refuse, fix or normalise most of what these requests carry.
func raw(t *testing.T, base, head string, body []byte) answer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", hostOf(t, base), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	msg := strings.ReplaceAll(strings.TrimRight(head, "\n"), "\n", "\r\n") + "\r\n\r\n"
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatalf("send request head: %v", err)
	}
	if len(body) > 0 {
		// The server may answer and close before reading the body; that is its right.
		_, _ = conn.Write(body)
	}
	return readAnswer(t, conn)
}

func readAnswer(t *testing.T, conn net.Conn) answer {
	t.Helper()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	// A server may send 100 Continue unasked (RFC 9110 §15.2); the answer follows it.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
		resp, err = http.ReadResponse(br, nil)
	}
	if err != nil {
		return answer{} // closed without an answer
	}
	defer resp.Body.Close()
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	a.Body, _ = io.ReadAll(resp.Body)
	a.decode()
	return a
}

// doHTTP sends req with Go's client and reads the answer.
func doHTTP(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	a := answer{Status: resp.StatusCode, Header: resp.Header}
	a.Body, _ = io.ReadAll(resp.Body)
	a.decode()
	return a
}

// request builds a request with a bearer token (none when empty).
func request(t *testing.T, method, url, token string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// graphql posts a GraphQL operation and keeps the HTTP status, which stack.GraphQL hides.
func graphql(t *testing.T, base, token, query string, vars map[string]any) answer {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	req := request(t, http.MethodPost, base+"/graphql", token, body)
	req.Header.Set("Content-Type", "application/json")
	return doHTTP(t, req)
}

// graphqlData decodes the data of a successful GraphQL answer.
func graphqlData(t *testing.T, a answer, out any) {
	t.Helper()
	var d struct {
		Data   json.RawMessage `json:"data"`
		Errors []any           `json:"errors"`
	}
	if err := json.Unmarshal(a.Body, &d); err != nil || len(d.Errors) > 0 || a.Status != http.StatusOK {
		t.Fatalf("graphql answered %s", a)
	}
	if err := json.Unmarshal(d.Data, out); err != nil {
		t.Fatalf("decode graphql data %s: %v", d.Data, err)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// b64 is JWT's base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// tokenKid reads the kid from a token's header.
func tokenKid(t *testing.T, tok string) string {
	t.Helper()
	head, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("token header: %v", err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(b, &h); err != nil || h.Kid == "" {
		t.Fatalf("token header %s holds no kid", b)
	}
	return h.Kid
}

// collectionPath is the REST path of a collection's versions under /api/stable.
func collectionPath(id string) string {
	return "/api/stable/repository/collection/" + id + "/versions"
}
