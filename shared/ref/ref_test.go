package ref

import (
	"errors"
	"math"
	"strings"
	"testing"

	"backuprepo/shared"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Ref
	}{
		{"latest", Ref{Kind: Latest}},
		{"recent", Ref{Kind: Latest}},
		{"LATEST", Ref{Kind: Latest}},
		{"Recent", Ref{Kind: Latest}},
		{"first", Ref{Kind: First}},
		{"First", Ref{Kind: First}},
		{"1", Ref{Kind: Number, Number: 1}},
		{"v1", Ref{Kind: Number, Number: 1}},
		{"V12", Ref{Kind: Number, Number: 12}},
		{"v007", Ref{Kind: Number, Number: 7}},
		{"9223372036854775807", Ref{Kind: Number, Number: math.MaxInt64}},
		{"v9223372036854775807", Ref{Kind: Number, Number: math.MaxInt64}},
		{"0f8fad5b-d9cb-469f-a165-70867728950e", Ref{Kind: ID, ID: "0f8fad5b-d9cb-469f-a165-70867728950e"}},
		{"0F8FAD5B-D9CB-469F-A165-70867728950E", Ref{Kind: ID, ID: "0f8fad5b-d9cb-469f-a165-70867728950e"}},
		{"00000000-0000-0000-0000-000000000000", Ref{Kind: ID, ID: "00000000-0000-0000-0000-000000000000"}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q) error: %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, mention string }{
		{"", "want latest"},
		{"v", "want latest"},
		{"v0", "start at 1"},
		{"0", "start at 1"},
		{"v00", "start at 1"},
		{"v-1", "want latest"},
		{"-1", "want latest"},
		{"+1", "want latest"},
		{"v+1", "want latest"},
		{"v99999999999999999999", "too large"},
		{"9223372036854775808", "too large"},
		{"1.5", "want latest"},
		{"1e3", "want latest"},
		{" 1", "want latest"},
		{"1 ", "want latest"},
		{"vv1", "want latest"},
		{"last", "want latest"},
		{"latest ", "want latest"},
		{"../etc/passwd", "want latest"},
		{"0f8fad5bd9cb469fa16570867728950e", "want latest"},       // no dashes
		{"{0f8fad5b-d9cb-469f-a165-70867728950e}", "want latest"}, // braces
		{"0f8fad5b-d9cb-469f-a165-70867728950g", "want latest"},   // not hex
		{"0f8fad5b-d9cb-469f-a16-570867728950e", "want latest"},   // dash moved
		{"0f8fad5b-d9cb-469f-a165-70867728950", "want latest"},    // short
		{"urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e", "want latest"},
		{"٣", "want latest"}, // a non-ASCII digit
		{strings.Repeat("9", 500), "too large"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", tt.in, got)
			continue
		}
		var se *shared.Error
		if !errors.As(err, &se) || se.Code != shared.CodeInvalidInput {
			t.Errorf("Parse(%q) error %v is not an INVALID_INPUT *shared.Error", tt.in, err)
			continue
		}
		if !strings.Contains(se.Message, tt.mention) {
			t.Errorf("Parse(%q) message %q does not mention %q", tt.in, se.Message, tt.mention)
		}
		if len(se.Message) > 200 {
			t.Errorf("Parse(%q) message is %d bytes long; long input must be cut", tt.in, len(se.Message))
		}
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    Ref
		want string
	}{
		{Ref{Kind: Latest}, "latest"},
		{Ref{Kind: First}, "first"},
		{Ref{Kind: Number, Number: 42}, "v42"},
		{Ref{Kind: ID, ID: "0f8fad5b-d9cb-469f-a165-70867728950e"}, "0f8fad5b-d9cb-469f-a165-70867728950e"},
		{Ref{}, "invalid"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"latest", "recent", "first", "v1", "42", "v0", "v-1", "v99999999999999999999",
		"0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E", "", "+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			var se *shared.Error
			if !errors.As(err, &se) || se.Code != shared.CodeInvalidInput {
				t.Fatalf("Parse(%q) error %v is not INVALID_INPUT", s, err)
			}
			return
		}
		switch r.Kind {
		case Latest, First:
			if r.Number != 0 || r.ID != "" {
				t.Fatalf("Parse(%q) = %+v carries a number or id", s, r)
			}
		case Number:
			if r.Number < 1 || r.ID != "" {
				t.Fatalf("Parse(%q) = %+v", s, r)
			}
		case ID:
			if r.Number != 0 || r.ID != strings.ToLower(s) || !isUUID(r.ID) {
				t.Fatalf("Parse(%q) = %+v", s, r)
			}
		default:
			t.Fatalf("Parse(%q) = %+v with an unknown kind", s, r)
		}
		back, err := Parse(r.String())
		if err != nil || back != r {
			t.Fatalf("Parse(%q).String() = %q parses to %+v, %v", s, r.String(), back, err)
		}
	})
}
