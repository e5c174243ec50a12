// Package ref parses the version references of download and delete paths ("latest", "first",
// "v3", "3", or a version id).
package ref

import (
	"strconv"
	"strings"

	"backuprepo/shared"
)

// Kind says which version a Ref points at.
type Kind int

const (
	// Latest is the newest version ("latest" or "recent").
	Latest Kind = iota + 1
	// First is the oldest version still kept.
	First
	// Number is the version with Ref.Number.
	Number
	// ID is the version with the UUID Ref.ID.
	ID
)

// Ref is a parsed version reference. The zero Ref is invalid.
type Ref struct {
	Kind   Kind
	Number int64  // set for Kind Number, >= 1
	ID     string // set for Kind ID, a lowercase canonical UUID
}

// Parse reads a version reference: "latest" or "recent" (the newest version), "first", "vN"
// or "N" with N >= 1, or a UUID in canonical 8-4-4-4-12 form (either letter case). Keywords
// and the "v" are case-insensitive. Anything else is a *shared.Error with code INVALID_INPUT.
func Parse(s string) (Ref, error) {
	switch {
	case strings.EqualFold(s, "latest"), strings.EqualFold(s, "recent"):
		return Ref{Kind: Latest}, nil
	case strings.EqualFold(s, "first"):
		return Ref{Kind: First}, nil
	case isUUID(s):
		return Ref{Kind: ID, ID: strings.ToLower(s)}, nil
	}
	digits := s
	if len(s) > 0 && (s[0] == 'v' || s[0] == 'V') {
		digits = s[1:]
	}
	if digits != "" && allDigits(digits) {
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return Ref{}, invalid(s, "the version number is too large")
		}
		if n < 1 {
			return Ref{}, invalid(s, "version numbers start at 1")
		}
		return Ref{Kind: Number, Number: n}, nil
	}
	return Ref{}, invalid(s, "want latest, recent, first, vN, N or a version id")
}

func invalid(s, why string) *shared.Error {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return shared.Errorf(shared.CodeInvalidInput, "invalid version reference %q: %s", s, why)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isUUID reports whether s is 8-4-4-4-12 hex digits separated by dashes.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// String gives the canonical text of r: "latest", "first", "vN" or the id; Parse reads it
// back to the same Ref.
func (r Ref) String() string {
	switch r.Kind {
	case Latest:
		return "latest"
	case First:
		return "first"
	case Number:
		return "v" + strconv.FormatInt(r.Number, 10)
	case ID:
		return r.ID
	}
	return "invalid"
}
