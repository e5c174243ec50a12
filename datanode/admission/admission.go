// Package admission is the data node's client of the control plane's internal API: it asks
// whether an upload may start, keeps it alive, commits or aborts it, and resolves, lists and
// deletes versions on behalf of a caller, every request signed with the node's secret.
package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"backuprepo/shared"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/pacing"
)

// maxAnswer bounds how much of an internal API answer is read; a list of versions of a large
// collection is the biggest legitimate one.
const maxAnswer = 32 << 20

// Config says how to reach and authenticate to the control plane.
type Config struct {
	ControlPlaneURL string // base URL, e.g. http://controlplane:8080
	NodeName        string
	Secret          []byte // the node secret shared with the control plane
	// HTTPClient defaults to one with connect, header and overall timeouts suited to small
	// JSON calls.
	HTTPClient *http.Client
	Now        func() time.Time
	// CommitRetryFor is how long Commit keeps retrying while the control plane is unreachable
	// or failing (default 30 s); commit is idempotent, so retrying cannot record twice.
	CommitRetryFor time.Duration
}

// Client calls the internal API. It is safe for concurrent use.
type Client struct {
	base        string
	node        string
	secret      []byte
	hc          *http.Client
	now         func() time.Time
	commitRetry time.Duration

	// lastAnswer is the unix-nano time of the last HTTP answer of any status, for readiness.
	lastAnswer atomic.Int64
}

// NewHTTPClient returns an HTTP client with the timeouts the internal API calls need: they
// are small JSON requests, so anything slower than a few seconds means trouble.
func NewHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: pacing.Control}).DialContext
	t.ResponseHeaderTimeout = 15 * time.Second
	t.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: t, Timeout: 20 * time.Second,
		// The internal API never redirects; following one would send a signed request elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// New checks cfg and returns a client.
func New(cfg Config) (*Client, error) {
	base := strings.TrimRight(cfg.ControlPlaneURL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("admission: control plane URL %q is not http(s)", cfg.ControlPlaneURL)
	}
	if cfg.NodeName == "" {
		return nil, errors.New("admission: node name is empty")
	}
	if len(cfg.Secret) < 16 {
		return nil, errors.New("admission: node secret is shorter than 16 bytes")
	}
	c := &Client{base: base, node: cfg.NodeName, secret: cfg.Secret, hc: cfg.HTTPClient,
		now: cfg.Now, commitRetry: cfg.CommitRetryFor}
	if c.hc == nil {
		c.hc = NewHTTPClient()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.commitRetry <= 0 {
		c.commitRetry = 30 * time.Second
	}
	return c, nil
}

// Admit asks whether an upload may start; a refusal is a *shared.Error with the control
// plane's code.
func (c *Client) Admit(ctx context.Context, req internalapi.AdmitRequest) (internalapi.AdmitResponse, error) {
	var out internalapi.AdmitResponse
	err := c.call(ctx, internalapi.PathAdmit, req, &out)
	if err == nil && out.UploadID == "" {
		err = fmt.Errorf("admit: %w", errors.New("answer without an upload id"))
	}
	return out, err
}

// Extend keeps a long upload's lock and reservation alive.
func (c *Client) Extend(ctx context.Context, uploadID string) error {
	return c.call(ctx, internalapi.PathExtend, internalapi.UploadRef{UploadID: uploadID}, nil)
}

// Commit records a durable upload as a version. Connection errors and 5xx answers are retried
// with backoff for CommitRetryFor; refusals are returned at once.
func (c *Client) Commit(ctx context.Context, req internalapi.CommitRequest) (internalapi.CommitResponse, error) {
	var out internalapi.CommitResponse
	deadline := c.now().Add(c.commitRetry)
	wait := 100 * time.Millisecond
	for {
		err := c.call(ctx, internalapi.PathCommit, req, &out)
		if err == nil || !retryable(err) || !c.now().Add(wait).Before(deadline) {
			return out, err
		}
		// Jitter keeps the nodes that lost the control plane together from returning in step.
		d := wait/2 + rand.N(wait)
		select {
		case <-ctx.Done():
			return out, err
		case <-time.After(d):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// Abort gives up an upload so that its lock and reservation are released at once instead of
// when they expire. It is best effort: the error is for logging only.
func (c *Client) Abort(ctx context.Context, uploadID string) error {
	return c.call(ctx, internalapi.PathAbort, internalapi.UploadRef{UploadID: uploadID}, nil)
}

// Outcome tells what became of an upload this node staged before it restarted.
func (c *Client) Outcome(ctx context.Context, uploadID string) (internalapi.OutcomeResponse, error) {
	var out internalapi.OutcomeResponse
	err := c.call(ctx, internalapi.PathOutcome, internalapi.UploadRef{UploadID: uploadID}, &out)
	return out, err
}

// Resolve checks the caller may download from the collection and turns ref into a version.
func (c *Client) Resolve(ctx context.Context, req internalapi.VersionRequest) (shared.Version, error) {
	var out internalapi.VersionResponse
	err := c.call(ctx, internalapi.PathResolve, req, &out)
	return out.Version, err
}

// List returns the collection's versions, newest first, if the caller may see them.
func (c *Client) List(ctx context.Context, req internalapi.ListRequest) ([]shared.Version, error) {
	var out internalapi.ListResponse
	err := c.call(ctx, internalapi.PathList, req, &out)
	return out.Versions, err
}

// Delete removes the version's record if the caller manages the collection and returns it;
// deleting the file is the node's job.
func (c *Client) Delete(ctx context.Context, req internalapi.VersionRequest) (shared.Version, error) {
	var out internalapi.VersionResponse
	err := c.call(ctx, internalapi.PathDelete, req, &out)
	return out.Version, err
}

// AbortAll aborts every upload of this node the control plane still holds (after a restart).
func (c *Client) AbortAll(ctx context.Context) (int, error) {
	var out internalapi.AbortAllResponse
	err := c.call(ctx, internalapi.PathAbortAll, internalapi.AbortAllRequest{}, &out)
	return out.Aborted, err
}

// Deletions lists files this node must delete.
func (c *Client) Deletions(ctx context.Context, limit int) ([]internalapi.FileRef, error) {
	var out internalapi.DeletionsResponse
	err := c.call(ctx, internalapi.PathDeletions, internalapi.DeletionsRequest{Limit: limit}, &out)
	return out.Files, err
}

// AckDeletions tells the control plane these files are gone.
func (c *Client) AckDeletions(ctx context.Context, versionIDs []string) error {
	return c.call(ctx, internalapi.PathDeletionsAck, internalapi.DeletionsAck{VersionIDs: versionIDs}, nil)
}

// Integrity reports stored versions as this node read them (see internalapi.IntegrityReport).
func (c *Client) Integrity(ctx context.Context, report internalapi.IntegrityReport) (internalapi.IntegrityResponse, error) {
	var out internalapi.IntegrityResponse
	err := c.call(ctx, internalapi.PathIntegrity, report, &out)
	return out, err
}

// Ping checks the control plane answers its liveness probe.
func (c *Client) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/livez", nil)
	if err != nil {
		return fmt.Errorf("build ping: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return unavailable(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	c.lastAnswer.Store(c.now().UnixNano())
	if resp.StatusCode != http.StatusOK {
		return unavailable(fmt.Errorf("control plane /livez answered %s", resp.Status))
	}
	return nil
}

// LastAnswer is when the control plane last answered any request, zero if never.
func (c *Client) LastAnswer() time.Time {
	n := c.lastAnswer.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// call POSTs in as signed JSON to path and decodes a 200 answer into out (nil: ignore it).
func (c *Client) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build %s request: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	internalapi.Sign(req, c.secret, c.node, body, c.now())
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s: %w", path, ctxErr)
		}
		return unavailable(err)
	}
	defer resp.Body.Close()
	c.lastAnswer.Store(c.now().UnixNano())
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return unavailable(fmt.Errorf("read %s answer: %w", path, err))
	}
	if resp.StatusCode == http.StatusOK {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decode %s answer: %w", path, err)
		}
		return nil
	}
	return refusal(path, resp.StatusCode, raw)
}

// refusal turns a non-200 answer into an error: the control plane's code and message when it
// sent an ErrorBody, DEPENDENCY_UNAVAILABLE for other 5xx answers (a proxy in between, a
// restart), INTERNAL for anything else.
func refusal(path string, status int, raw []byte) error {
	var eb internalapi.ErrorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Code == shared.CodeNodeSignatureInvalid {
		// The node's own credentials were refused (a node secret mismatch): the caller did
		// nothing wrong, so it must not see a 401 of its own.
		return shared.Wrap(&statusError{path: path, status: status}, shared.CodeDependencyUnavailable,
			"the control plane refused this data node's credentials")
	}
	if json.Unmarshal(raw, &eb) == nil && eb.Code != "" {
		e := &shared.Error{Code: eb.Code, Message: eb.Message, Err: &statusError{path: path, status: status}}
		if e.Message == "" {
			e.Message = strings.ToLower(strings.ReplaceAll(string(eb.Code), "_", " "))
		}
		return e
	}
	cause := &statusError{path: path, status: status}
	if status >= 500 {
		return unavailable(cause)
	}
	return fmt.Errorf("unexpected answer: %w", cause)
}

// statusError keeps the HTTP status of a refusal for retry decisions and logs.
type statusError struct {
	path   string
	status int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s answered %d %s", e.path, e.status, http.StatusText(e.status))
}

func unavailable(err error) error {
	return shared.Wrap(err, shared.CodeDependencyUnavailable, "the control plane is unavailable")
}

// retryable reports whether a failed call may succeed when repeated: the control plane was not
// reached or failed on its side. The caller's own context ending is not retryable: call wraps
// it without a code.
func retryable(err error) bool {
	if se, ok := errors.AsType[*statusError](err); ok {
		return se.status >= 500
	}
	return shared.ErrorCode(err) == shared.CodeDependencyUnavailable
}

// Unavailable reports whether err means the control plane could not be reached or failed, as
// opposed to refusing the request; for such errors the outcome of a commit is unknown.
func Unavailable(err error) bool { return retryable(err) }
