package httpapi

import (
	"errors"
	"strconv"
	"strings"
)

// errUnsatisfiable is a Range the version cannot satisfy: 416 with Content-Range bytes */size.
var errUnsatisfiable = errors.New("range not satisfiable")

// byteRange is the part of a version a download sends.
type byteRange struct {
	off, n  int64
	partial bool // a 206 answer with Content-Range
}

// parseRange reads a Range header for a version of size bytes. SPEC §4.1 promises single
// ranges: "bytes=a-b", "bytes=a-" and "bytes=-n". A header in another unit, or naming several
// ranges, is ignored and the whole version is sent, as RFC 9110 §14.2 allows; a malformed
// single range, or one that starts past the end, is unsatisfiable.
func parseRange(header string, size int64) (byteRange, error) {
	whole := byteRange{0, size, false}
	if header == "" {
		return whole, nil
	}
	unit, spec, ok := strings.Cut(header, "=")
	if !ok || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(spec, ",") {
		return whole, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return byteRange{}, errUnsatisfiable
	}
	if first == "" {
		// A suffix: the last n bytes.
		n, ok := digits(last)
		if !ok || n == 0 {
			return byteRange{}, errUnsatisfiable
		}
		n = min(n, size)
		if n == 0 {
			return byteRange{}, errUnsatisfiable
		}
		return byteRange{size - n, n, true}, nil
	}
	start, ok := digits(first)
	if !ok || start >= size {
		return byteRange{}, errUnsatisfiable
	}
	end := size - 1
	if last != "" {
		e, ok := digits(last)
		if !ok || e < start {
			return byteRange{}, errUnsatisfiable
		}
		end = min(e, size-1)
	}
	return byteRange{start, end - start + 1, true}, nil
}

// digits parses a non-empty run of ASCII digits; values past int64 saturate, which only makes
// a position later than any version's end.
func digits(s string) (int64, bool) {
	if s == "" || len(s) > 64 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 1<<63 - 1, true
		}
		return 0, false
	}
	return n, true
}

// etagMatches reports whether an If-None-Match or If-Range value names etag; weak
// comparison for If-None-Match as RFC 9110 §13.1.2 says, "*" matches any.
func etagMatches(header, etag string, weak bool) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" && weak {
			return true
		}
		if weak {
			t = strings.TrimPrefix(t, "W/")
		}
		if t == etag {
			return true
		}
	}
	return false
}
