package httpapi

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	t.Parallel()
	const size = 1000
	cases := []struct {
		header string
		want   byteRange
		bad    bool
	}{
		{"", byteRange{0, size, false}, false},
		{"bytes=0-0", byteRange{0, 1, true}, false},
		{"bytes=0-999", byteRange{0, size, true}, false},
		{"bytes=10-", byteRange{10, 990, true}, false},
		{"bytes=990-5000", byteRange{990, 10, true}, false},
		{"bytes=-1", byteRange{999, 1, true}, false},
		{"bytes=-5000", byteRange{0, size, true}, false},
		{"BYTES = 5-9", byteRange{5, 5, true}, false},
		{"bytes= 5-9 ", byteRange{5, 5, true}, false},
		// Another unit or several ranges: ignored, the whole version is sent.
		{"items=0-5", byteRange{0, size, false}, false},
		{"bytes=0-1,5-6", byteRange{0, size, false}, false},
		{"bytes", byteRange{0, size, false}, false},
		// Malformed or past the end: 416.
		{"bytes=1000-", byteRange{}, true},
		{"bytes=5-4", byteRange{}, true},
		{"bytes=-0", byteRange{}, true},
		{"bytes=-", byteRange{}, true},
		{"bytes=5", byteRange{}, true},
		{"bytes=a-b", byteRange{}, true},
		{"bytes=+5-9", byteRange{}, true},
		{"bytes=-+5", byteRange{}, true},
		{"bytes=0x10-", byteRange{}, true},
		{"bytes=5 -9", byteRange{}, true},
		{"bytes=99999999999999999999-", byteRange{}, true},
		{"bytes=0-99999999999999999999", byteRange{0, size, true}, false},
		{"bytes=--5", byteRange{}, true},
	}
	for _, c := range cases {
		got, err := parseRange(c.header, size)
		if c.bad != (err != nil) || (!c.bad && got != c.want) {
			t.Errorf("parseRange(%q) = %+v, %v; want %+v, bad=%v", c.header, got, err, c.want, c.bad)
		}
	}
	// An empty version has no byte to range over.
	if _, err := parseRange("bytes=0-", 0); err == nil {
		t.Error("bytes=0- of an empty version was satisfiable")
	}
	if got, err := parseRange("", 0); err != nil || got != (byteRange{0, 0, false}) {
		t.Errorf("no Range on an empty version: %+v %v", got, err)
	}
}

// FuzzParseRange checks that whatever the header, a satisfiable answer lies inside the version
// and a well-formed single range is read back exactly.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"", "bytes=0-", "bytes=-1", "bytes=5-10", "bytes=1-2,3-4", "bytes=\x00-1",
		"bytes=99999999999999999999-", "items=1-2", "bytes=0-0", "bytes= -7 "} {
		f.Add(s, int64(1000), int64(3), int64(77))
	}
	f.Fuzz(func(t *testing.T, header string, size, a, b int64) {
		if size < 0 {
			size = -(size + 1)
		}
		got, err := parseRange(header, size)
		if err == nil {
			if got.off < 0 || got.n < 0 || got.off+got.n > size || got.off+got.n < got.off {
				t.Fatalf("parseRange(%q, %d) = %+v: outside the version", header, size, got)
			}
			if !got.partial && (got.off != 0 || got.n != size) {
				t.Fatalf("parseRange(%q, %d) = %+v: a full answer that is not whole", header, size, got)
			}
			if got.partial && got.n == 0 {
				t.Fatalf("parseRange(%q, %d) = %+v: an empty partial answer", header, size, got)
			}
		}
		// A well-formed "bytes=a-b" inside the version is answered exactly.
		if a >= 0 && b >= a && b < size {
			h := "bytes=" + strconv.FormatInt(a, 10) + "-" + strconv.FormatInt(b, 10)
			got, err := parseRange(h, size)
			if err != nil || got != (byteRange{a, b - a + 1, true}) {
				t.Fatalf("parseRange(%q, %d) = %+v, %v", h, size, got, err)
			}
		}
		if strings.Contains(header, ",") && err != nil {
			t.Fatalf("parseRange(%q): several ranges must be ignored, not refused", header)
		}
	})
}
