// Package internalapi is the contract between data nodes and the control plane: the paths and
// messages of admit, extend, commit, abort, resolve, list and delete, and the HMAC signature
// that authenticates a node (user tokens are never accepted there).
package internalapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"backuprepo/shared"
)

// Paths of the internal API, served by the control plane under its own prefix that the public
// router (nginx) never exposes.
const (
	Prefix      = "/internal/v1"
	PathAdmit   = Prefix + "/uploads/admit"
	PathExtend  = Prefix + "/uploads/extend"
	PathCommit  = Prefix + "/uploads/commit"
	PathAbort   = Prefix + "/uploads/abort"
	PathResolve = Prefix + "/versions/resolve"
	PathList    = Prefix + "/versions/list"
	PathDelete  = Prefix + "/versions/delete"
	PathOutcome = Prefix + "/uploads/outcome"
	// PathAbortAll aborts every upload of the calling node still holding a reservation: a
	// node that restarted has none in flight, and its lost ones must not hold their locks
	// until the lease runs out.
	PathAbortAll = Prefix + "/uploads/abort-all"
	// PathDeletions lists files the calling node must delete (versions deleted or rotated
	// out); PathDeletionsAck acknowledges the ones it removed.
	PathDeletions    = Prefix + "/files/deletions"
	PathDeletionsAck = Prefix + "/files/deletions/ack"
	// PathIntegrity reports what the calling node found when it read stored versions: a
	// `datanode verify` scan, or a download that hit a checksum mismatch.
	PathIntegrity = Prefix + "/versions/integrity"
)

// Caller identifies the end user on whose behalf a node asks: the raw bearer token (the node
// has already checked its signature and expiry) and the client's IP address.
type Caller struct {
	Token    string `json:"token"`
	ClientIP string `json:"clientIp"`
}

// AdmitRequest asks whether an upload may start, before its body is read.
type AdmitRequest struct {
	Caller
	CollectionID  string `json:"collectionId"`
	ContentLength int64  `json:"contentLength"` // -1 when unknown (chunked)
	// Room is the free space of the collection's disk on the node minus its reserve.
	Room int64 `json:"room"`
}

// AdmitResponse grants an upload: the node streams at most Allowance bytes and, when the body
// goes over, refuses it with LimitCode.
type AdmitResponse struct {
	UploadID          string      `json:"uploadId"` // also the id of the version it becomes
	Allowance         int64       `json:"allowance"`
	LimitCode         shared.Code `json:"limitCode"`
	RequireEncryption bool        `json:"requireEncryption"`
	// ExtendEvery is how often a long upload must call extend to keep its lock and reservation.
	ExtendEvery time.Duration `json:"extendEvery"`
	// RoomLeft is the node's room (as the request reported it) less every live reservation on
	// the node, this one included: what a correction of the reported room may take away
	// before this upload's allowance must shrink.
	RoomLeft int64 `json:"roomLeft"`
}

// UploadRef names an upload in flight.
type UploadRef struct {
	UploadID string `json:"uploadId"`
}

// CommitRequest records a durable upload as a version. Commit is idempotent: the same
// UploadID committed twice returns the same version.
type CommitRequest struct {
	UploadID string `json:"uploadId"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// CommitResponse is the new version and the versions rotated out, whose files the node deletes.
type CommitResponse struct {
	Version shared.Version   `json:"version"`
	Rotated []shared.Version `json:"rotated"`
}

// OutcomeResponse tells a node that restarted what became of an upload it had staged.
type OutcomeResponse struct {
	Committed bool           `json:"committed"`
	Version   shared.Version `json:"version"`
}

// VersionRequest asks for one version of a collection by ref (download or delete).
type VersionRequest struct {
	Caller
	CollectionID string `json:"collectionId"`
	Ref          string `json:"ref"`
}

// VersionResponse is one version.
type VersionResponse struct {
	Version shared.Version `json:"version"`
}

// ListRequest asks for the versions of a collection.
type ListRequest struct {
	Caller
	CollectionID string `json:"collectionId"`
}

// ListResponse lists versions, newest first.
type ListResponse struct {
	Versions []shared.Version `json:"versions"`
}

// AbortAllRequest asks to abort every upload of the calling node (it has an empty body).
type AbortAllRequest struct{}

// AbortAllResponse says how many uploads were aborted.
type AbortAllResponse struct {
	Aborted int `json:"aborted"`
}

// DeletionsRequest asks for at most Limit pending file deletions of the calling node.
type DeletionsRequest struct {
	Limit int `json:"limit"`
}

// FileRef names one stored file.
type FileRef struct {
	CollectionID string `json:"collectionId"`
	VersionID    string `json:"versionId"`
}

// DeletionsResponse lists files to delete, oldest first.
type DeletionsResponse struct {
	Files []FileRef `json:"files"`
}

// DeletionsAck acknowledges deleted files by version id.
type DeletionsAck struct {
	VersionIDs []string `json:"versionIds"`
}

// MaxIntegrityChecks bounds the checks of one IntegrityReport; a scan sends several.
const MaxIntegrityChecks = 1000

// IntegrityReport carries what a node found on its disks. The control plane compares every
// check with its version row and records the outcome per version; GraphQL shows the problems
// per collection.
type IntegrityReport struct {
	// ScanID (a UUID) names the `datanode verify` scan every report of it belongs to; empty
	// for a download's report.
	ScanID string `json:"scanId,omitempty"`
	// Complete marks the last report of a scan of every disk of the node, which began ScanAge
	// before this report by the node's monotonic clock: versions recorded on the node, created
	// well before the scan began and not checked by it, are then recorded as missing. No
	// clock of the node is compared with the control plane's.
	Complete bool             `json:"complete"`
	ScanAge  time.Duration    `json:"scanAge,omitempty"`
	Checks   []IntegrityCheck `json:"checks"`
}

// IntegrityCheck is one stored file as the node read it.
type IntegrityCheck struct {
	CollectionID string `json:"collectionId"`
	VersionID    string `json:"versionId"`
	// Size and SHA256 (hex) are what the whole file held; SHA256 is empty when the node did not
	// read it whole (Problem says why).
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Problem is empty when the file was read whole; otherwise what went wrong, such as "block
	// 3 (bytes 3145728-4194303) fails its checksum" found while serving a download, or a read
	// error.
	Problem string `json:"problem"`
}

// IntegrityResponse sums up the report as the control plane recorded it.
type IntegrityResponse struct {
	Verified int `json:"verified"` // checks that matched their version row
	Missing  int `json:"missing"`  // versions recorded on the node that a complete scan did not find
	// Problems lists the checks of this report that did not match their version row (size,
	// sha256, or a Problem), with what the control plane recorded about them.
	Problems []IntegrityProblem `json:"problems"`
	// Unknown lists checked files that have no version row: not recorded anywhere, and never
	// deleted for it (a node only deletes what the control plane names).
	Unknown []FileRef `json:"unknown"`
}

// IntegrityProblem is a checked version that does not match its record.
type IntegrityProblem struct {
	CollectionID string `json:"collectionId"`
	VersionID    string `json:"versionId"`
	Kind         string `json:"kind"` // "damaged" (read whole, but differs) or "unreadable"
	Detail       string `json:"detail"`
}

// ErrorBody is how the internal API reports a refusal; the node relays Code and Message.
type ErrorBody struct {
	Code    shared.Code `json:"code"`
	Message string      `json:"error"`
}

// Headers that carry a node's signature.
const (
	HeaderNode      = "X-BR-Node"
	HeaderTimestamp = "X-BR-Timestamp"
	HeaderSignature = "X-BR-Signature"
	// HeaderClientIP carries, from the front door to a data node, the client's address; it is
	// believed only with a valid HeaderClientIPSig.
	HeaderClientIP    = "X-BR-Client-IP"
	HeaderClientIPSig = "X-BR-Client-IP-Signature"
)

// MaxSkew is how far a signed request's timestamp may be from the receiver's clock.
const MaxSkew = 2 * time.Minute

var (
	ErrUnsigned     = errors.New("request is not signed by a node")
	ErrBadSignature = errors.New("bad node signature")
	ErrStale        = errors.New("node signature timestamp out of range")
)

func mac(secret []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

func bodyHash(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}

// Sign adds the node signature headers to r, whose body is body.
func Sign(r *http.Request, secret []byte, node string, body []byte, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set(HeaderNode, node)
	r.Header.Set(HeaderTimestamp, ts)
	r.Header.Set(HeaderSignature, hex.EncodeToString(mac(secret, node, ts, r.Method, r.URL.Path, bodyHash(body))))
}

// Verify checks the node signature of r with body and returns the node's name.
func Verify(r *http.Request, secret []byte, body []byte, now time.Time) (string, error) {
	node, ts, sig := r.Header.Get(HeaderNode), r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature)
	if node == "" || ts == "" || sig == "" {
		return "", ErrUnsigned
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return "", ErrStale
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return "", ErrBadSignature
	}
	if !hmac.Equal(got, mac(secret, node, ts, r.Method, r.URL.Path, bodyHash(body))) {
		return "", ErrBadSignature
	}
	return node, nil
}

// SignClientIP returns the signature the front door puts beside HeaderClientIP.
func SignClientIP(secret []byte, ip string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return ts + "." + hex.EncodeToString(mac(secret, "client-ip", ts, ip))
}

// VerifyClientIP checks a HeaderClientIPSig value for ip.
func VerifyClientIP(secret []byte, ip, sig string, now time.Time) bool {
	ts, h, ok := strings.Cut(sig, ".")
	if !ok {
		return false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > MaxSkew || d < -MaxSkew {
		return false
	}
	got, err := hex.DecodeString(h)
	if err != nil {
		return false
	}
	return hmac.Equal(got, mac(secret, "client-ip", ts, ip))
}
