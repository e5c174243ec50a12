// Package client talks to a Backup Repository control plane: login, GraphQL with machine-coded
// errors, and streaming uploads and downloads of backup versions through the front door.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

// Options tune a Client; the zero value is usable.
type Options struct {
	// HTTP is the client to send requests with; nil means one without a whole-request
	// timeout, since a backup may stream for hours.
	HTTP *http.Client
	// Retries is how many times a replayable upload, or an interrupted download, is tried
	// again; 0 means 4, negative means never.
	Retries int
	// Backoff is the first pause between tries, doubled each time up to a minute; 0 means 1s.
	Backoff time.Duration
	// OnRetry, when set, hears about each retry before its pause.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Client calls one Backup Repository with one bearer token.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	opts  Options
}

// New returns a client for the repository at baseURL (scheme and host, optionally a path
// prefix) authenticating with token (empty for Login only).
func New(baseURL, token string, opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, shared.Errorf(shared.CodeInvalidInput, "repository URL %q must be http(s)://host[:port]", baseURL)
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{}
	}
	if opts.Retries == 0 {
		opts.Retries = 4
	}
	if opts.Retries < 0 {
		opts.Retries = 0
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	return &Client{base: u, token: token, http: opts.HTTP, opts: opts}, nil
}

// BaseURL is the repository's URL as given to New, without a trailing slash.
func (c *Client) BaseURL() string { return c.base.String() }

func (c *Client) url(path string) string { return c.base.String() + path }

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "backupctl")
	return req, nil
}

// Session is a fresh login token.
type Session struct {
	Token     string    `json:"token"`
	SessionID string    `json:"sessionId"`
	Expire    time.Time `json:"expire"`
}

// Login exchanges an email and password for a token (POST /api/stable/auth/login).
func (c *Client) Login(ctx context.Context, email, password string) (Session, error) {
	body, err := json.Marshal(map[string]string{"username": email, "password": password})
	if err != nil {
		return Session{}, fmt.Errorf("encode login: %w", err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/api/stable/auth/login", bytes.NewReader(body))
	if err != nil {
		return Session{}, err
	}
	req.Header.Del("Authorization")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return Session{}, connError(err)
	}
	defer resp.Body.Close()
	var s Session
	if err := readEnvelope(resp, &s); err != nil {
		return Session{}, err
	}
	return s, nil
}

// connError makes a transport failure a caller-facing error that says the server was not
// reached (as opposed to refusing).
func connError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return shared.Wrap(err, shared.CodeNodeUnavailable, "cannot reach the repository: "+err.Error())
}

// readEnvelope decodes a REST answer: data into out on 2xx, the server's refusal otherwise.
func readEnvelope(resp *http.Response, out any) error {
	env, err := envelope.Decode(resp.Body)
	if err != nil {
		if resp.StatusCode/100 != 2 {
			return statusError(resp)
		}
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 || !env.Status {
		if env.Status || (env.Error == "" && env.Code == "") {
			return statusError(resp)
		}
		return env.Err()
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return fmt.Errorf("decode answer data: %w", err)
	}
	return nil
}

// statusError is the refusal of a server that sent no envelope (a proxy in between, say).
func statusError(resp *http.Response) error {
	code := shared.CodeInternal
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		code = shared.CodeUnauthenticated
	case http.StatusForbidden:
		code = shared.CodeForbidden
	case http.StatusNotFound:
		code = shared.CodeNotFound
	case http.StatusRequestEntityTooLarge:
		code = shared.CodePayloadTooLarge
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		code = shared.CodeNodeUnavailable
	}
	return shared.Errorf(code, "the repository answered %s", resp.Status)
}

// GraphQLError is one entry of a GraphQL answer's errors.
type GraphQLError struct {
	Message    string `json:"message"`
	Path       []any  `json:"path"`
	Extensions struct {
		Code shared.Code `json:"code"`
	} `json:"extensions"`
}

// GraphQL runs one operation and decodes its data into out. Errors in the answer come back as
// a *shared.Error with the first error's extensions.code and every message.
func (c *Client) GraphQL(ctx context.Context, query string, vars map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return fmt.Errorf("encode graphql request: %w", err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return connError(err)
	}
	defer resp.Body.Close()
	var answer struct {
		Data   json.RawMessage `json:"data"`
		Errors []GraphQLError  `json:"errors"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, envelope.MaxEnvelope)).Decode(&answer); err != nil {
		if resp.StatusCode != http.StatusOK {
			return statusError(resp)
		}
		return fmt.Errorf("decode graphql answer: %w", err)
	}
	if len(answer.Errors) > 0 {
		code := answer.Errors[0].Extensions.Code
		if code == "" {
			code = shared.CodeInvalidInput // gqlgen's own parse and validation errors carry none
		}
		msgs := make([]string, len(answer.Errors))
		for i, e := range answer.Errors {
			msgs[i] = e.Message
		}
		return shared.Errorf(code, "%s", strings.Join(msgs, "; "))
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(answer.Data, out); err != nil {
		return fmt.Errorf("decode graphql data: %w", err)
	}
	return nil
}

// Version is a stored backup version as the REST API shows it.
type Version struct {
	ID           string    `json:"id"`
	CollectionID string    `json:"collectionId"`
	Number       int64     `json:"number"`
	Filename     string    `json:"filename"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	CreatedAt    time.Time `json:"createdAt"`
}

func versionsPath(collection string) string {
	return "/api/stable/repository/collection/" + url.PathEscape(collection) + "/versions"
}

// wait pauses before retry attempt (1-based), at least as long as the server asked.
func (c *Client) wait(ctx context.Context, attempt int, err error, retryAfter time.Duration) error {
	d := c.opts.Backoff << (attempt - 1)
	if d > time.Minute || d <= 0 {
		d = time.Minute
	}
	d = max(d, min(retryAfter, time.Minute))
	if c.opts.OnRetry != nil {
		c.opts.OnRetry(attempt, err, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func retryAfter(resp *http.Response) time.Duration {
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}
