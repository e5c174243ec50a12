// Package nodemeta is the gossip cluster's shared contract: the one codec for the metadata each
// member announces (at most 512 bytes), the protocol timing every member runs with, how every
// member keeps itself joined, and the bridge of memberlist's log lines into slog.
package nodemeta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"backuprepo/shared"
)

// MaxSize is memberlist's MetaMaxSize: UpdateNode panics on anything longer.
const MaxSize = 512

// formatV1 is the first byte of every encoding; a future layout gets a new number so that old
// members reject it instead of misreading it.
const formatV1 byte = 1

// Field limits keep even a fully populated Meta (without per-disk detail) near MaxSize.
const (
	maxName    = 64
	maxZone    = 64
	maxVersion = 64
	maxURL     = 200
	maxPath    = 200
)

// ErrInvalid is wrapped by every error Encode and Decode return.
var ErrInvalid = errors.New("invalid node metadata")

// Role says what kind of process a cluster member is.
type Role string

const (
	RoleControlPlane Role = "controlplane"
	RoleDataNode     Role = "datanode"
)

// Meta is what a member announces about itself. State is the member's own word: alive,
// draining, or left, announced just before a graceful leave because memberlist reports a leave
// and a crash to the others in the same way. Suspect and dead are what others conclude and are
// never announced.
type Meta struct {
	Role      Role
	Name      string
	PublicURL string // required for data nodes; optional for control-plane replicas
	Zone      string
	State     shared.NodeState
	Version   string
	Total     int64 // bytes over all disks
	Free      int64
	// Disks is the per-disk detail. Encode drops it, keeping Total and Free, when it would not
	// fit in MaxSize; Decode then returns no disks.
	Disks []shared.Disk
}

// WithDisks returns m with Disks set and Total and Free summed from them.
func (m Meta) WithDisks(disks []shared.Disk) Meta {
	m.Disks = append([]shared.Disk(nil), disks...)
	m.Total, m.Free = 0, 0
	for _, d := range disks {
		m.Total += d.Total
		m.Free += d.Free
	}
	return m
}

// wire is the JSON layout; short keys because every byte counts against MaxSize.
type wire struct {
	Role    Role       `json:"r"`
	Name    string     `json:"n"`
	URL     string     `json:"u,omitempty"`
	Zone    string     `json:"z,omitempty"`
	State   string     `json:"s"`
	Version string     `json:"v,omitempty"`
	Total   int64      `json:"t"`
	Free    int64      `json:"f"`
	Disks   []wireDisk `json:"d,omitempty"`
}

type wireDisk struct {
	Path  string `json:"p"`
	Total int64  `json:"t"`
	Free  int64  `json:"f"`
}

// Encode validates m and returns its announcement. When the per-disk detail does not fit it is
// dropped as a whole (totals stay), so the result never exceeds MaxSize; if even that is too
// long, Encode fails.
func Encode(m Meta) ([]byte, error) {
	if err := validate(m); err != nil {
		return nil, err
	}
	b, err := marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) <= MaxSize {
		return b, nil
	}
	if len(m.Disks) > 0 {
		m.Disks = nil
		if b, err = marshal(m); err != nil {
			return nil, err
		}
		if len(b) <= MaxSize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %d bytes is above the limit of %d", ErrInvalid, len(b), MaxSize)
}

func marshal(m Meta) ([]byte, error) {
	w := wire{Role: m.Role, Name: m.Name, URL: m.PublicURL, Zone: m.Zone, State: string(m.State),
		Version: m.Version, Total: m.Total, Free: m.Free}
	for _, d := range m.Disks {
		w.Disks = append(w.Disks, wireDisk(d))
	}
	var buf bytes.Buffer
	buf.WriteByte(formatV1)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Decode parses an announcement strictly: anything Encode would not have produced byte for
// byte (unknown version, unknown or duplicate fields, other spacing or escaping, invalid
// values, oversize) is rejected.
func Decode(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(b) > MaxSize {
		return Meta{}, fmt.Errorf("%w: %d bytes is above the limit of %d", ErrInvalid, len(b), MaxSize)
	}
	if b[0] != formatV1 {
		return Meta{}, fmt.Errorf("%w: unknown format version %d", ErrInvalid, b[0])
	}
	dec := json.NewDecoder(bytes.NewReader(b[1:]))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return Meta{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	m := Meta{Role: w.Role, Name: w.Name, PublicURL: w.URL, Zone: w.Zone,
		State: shared.NodeState(w.State), Version: w.Version, Total: w.Total, Free: w.Free}
	for _, d := range w.Disks {
		m.Disks = append(m.Disks, shared.Disk(d))
	}
	if err := validate(m); err != nil {
		return Meta{}, err
	}
	canon, err := marshal(m)
	if err != nil {
		return Meta{}, err
	}
	if !bytes.Equal(canon, b) {
		return Meta{}, fmt.Errorf("%w: not in canonical form", ErrInvalid)
	}
	return m, nil
}

func validate(m Meta) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
	switch m.Role {
	case RoleControlPlane, RoleDataNode:
	default:
		return bad("unknown role %q", m.Role)
	}
	if m.Name == "" {
		return bad("empty name")
	}
	if !isToken(m.Name, maxName) {
		return bad("name %q: want 1 to %d of A-Z a-z 0-9 . _ -", m.Name, maxName)
	}
	if m.Zone != "" && !isToken(m.Zone, maxZone) {
		return bad("zone %q: want up to %d of A-Z a-z 0-9 . _ -", m.Zone, maxZone)
	}
	if len(m.Version) > maxVersion || !isPrintableASCII(m.Version) {
		return bad("version: want up to %d printable ASCII characters", maxVersion)
	}
	switch m.State {
	case shared.NodeAlive, shared.NodeDraining, shared.NodeLeft:
	default:
		return bad("announced state %q: want alive, draining or left", m.State)
	}
	if m.PublicURL == "" {
		if m.Role == RoleDataNode {
			return bad("a data node needs a public URL")
		}
	} else if err := checkURL(m.PublicURL); err != nil {
		return bad("public URL %q: %v", m.PublicURL, err)
	}
	if m.Total < 0 || m.Free < 0 || m.Free > m.Total {
		return bad("capacity: free %d and total %d must satisfy 0 <= free <= total", m.Free, m.Total)
	}
	if len(m.Disks) > 0 {
		var total, free int64
		for _, d := range m.Disks {
			if d.Path == "" || len(d.Path) > maxPath || !isText(d.Path) {
				return bad("disk path %q: want 1 to %d printable characters", d.Path, maxPath)
			}
			if d.Total < 0 || d.Free < 0 || d.Free > d.Total {
				return bad("disk %q: free %d and total %d must satisfy 0 <= free <= total", d.Path, d.Free, d.Total)
			}
			total += d.Total
			free += d.Free
			if total < 0 || free < 0 {
				return bad("disk sizes overflow")
			}
		}
		if total != m.Total || free != m.Free {
			return bad("totals %d/%d do not match the disks' sums %d/%d", m.Total, m.Free, total, free)
		}
	}
	return nil
}

func checkURL(s string) error {
	if len(s) > maxURL || !isPrintableASCII(s) || strings.ContainsAny(s, " \"\\") {
		return fmt.Errorf("want up to %d printable ASCII characters", maxURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return errors.New("want scheme://host[:port][/path] only")
	}
	return nil
}

func isToken(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// isText accepts valid UTF-8 without control characters (which JSON would escape and make the
// size of an encoding hard to predict).
func isText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}
