package size

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
		want int64
	}{
		{"0", 0},
		{"1024", 1024},
		{"  1024  ", 1024},
		{"007", 7},
		{"1B", 1},
		{"1 B", 1},
		{"1KB", 1000},
		{"1kb", 1000},
		{"1 KiB", 1024},
		{"1kib", 1024},
		{"500MiB", 500 << 20},
		{"500 MB", 500_000_000},
		{"4GB", 4_000_000_000},
		{"1.5GiB", 1610612736},
		{"1.5 GiB", 1610612736},
		{"0.5KB", 500},
		{"0.1KiB", 102}, // 102.4 rounded down
		{"2TB", 2_000_000_000_000},
		{"2TiB", 2 << 40},
		{"3PB", 3_000_000_000_000_000},
		{"3PiB", 3 << 50},
		{"8EB", 8_000_000_000_000_000_000},
		{"7EiB", 7 << 60},
		{"9223372036854775807", math.MaxInt64},
		{"9223372036854775807B", math.MaxInt64},
		{"7.999999999999999999566319131005798EiB", math.MaxInt64}, // (2^63-0.5)/2^60
		{"7.99999999999999999913EiB", math.MaxInt64 - 1},
		{"30G" + "iB", 30 << 30},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q) error: %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		mention string // a piece of the message that tells the user what is wrong
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"-1", "negative"},
		{"-1GiB", "negative"},
		{"+1", "want a number"},
		{"GiB", "want a number"},
		{"abc", "want a number"},
		{"1 GiBs", "unknown unit"},
		{"1 G", "unknown unit"},
		{"1 bytes", "unknown unit"},
		{"1.5", "whole number"},
		{"1.5B", "whole number"},
		{"1..5GiB", "malformed"},
		{"1.2.3GiB", "malformed"},
		{".5GiB", "malformed"},
		{"5.GiB", "malformed"},
		{"1e3", "unknown unit"},
		{"0x10", "unknown unit"},
		{"1 2", "unknown unit"},
		{"1_000", "unknown unit"},
		{"9223372036854775808", "maximum"},
		{"99999999999999999999", "maximum"},
		{"8EiB", "maximum"},
		{"9.3EB", "maximum"},
		{"8192PiB", "maximum"},
		{"9223372036854775807KB", "maximum"},
		{strings.Repeat("1", 100), "too long"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %d, want an error", tt.in, got)
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
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{500 << 20, "500 MiB"},
		{1610612736, "1.5 GiB"},
		{4_000_000_000, "3.73 GiB"},
		{1<<20 - 1, "1 MiB"}, // 1023.999 KiB rounds up a unit rather than printing "1024 KiB"
		{2 << 40, "2 TiB"},
		{3 << 50, "3 PiB"},
		{math.MaxInt64, "8 EiB"},
		{-1536, "-1.5 KiB"},
		{-5, "-5 B"},
		{math.MinInt64, "-8 EiB"},
	}
	for _, tt := range tests {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// checkRoundTrip asserts that Format's output reads back to within half a percent.
func checkRoundTrip(t *testing.T, n int64) {
	t.Helper()
	if n < 0 || n > 7<<60 { // beyond 7 EiB "8 EiB" is rounded above the int64 range
		return
	}
	txt := Format(n)
	back, err := Parse(txt)
	if err != nil {
		t.Fatalf("Parse(Format(%d) = %q): %v", n, txt, err)
	}
	diff := math.Abs(float64(back) - float64(n))
	if diff > float64(n)*0.005+1 {
		t.Fatalf("Parse(Format(%d) = %q) = %d, off by %.0f", n, txt, back, diff)
	}
}

func TestFormatRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, 1, 999, 1024, 1025, 123456789, 1 << 40, 5<<50 + 12345, 7 << 60} {
		checkRoundTrip(t, n)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "1024", "1.5GiB", "500 MB", "-1", "", "1..2KB", "8EiB", "7.9EiB", "0.001 KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			var se *shared.Error
			if !errors.As(err, &se) || se.Code != shared.CodeInvalidInput {
				t.Fatalf("Parse(%q) error %v is not INVALID_INPUT", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d, negative", s, n)
		}
		checkRoundTrip(t, n)
	})
}
