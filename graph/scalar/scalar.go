// Package scalar marshals the custom GraphQL scalars of the admin API (Int64, Duration, Time,
// Int64ID, StringMap) for gqlgen; it is separate from package graph because gqlgen must load
// it before graph's generated code exists.
package scalar

import (
	"encoding/json"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"backuprepo/shared"
	"backuprepo/shared/size"
)

// MarshalInt64 writes a byte count as a JSON number: int64 fits a float64 exactly up to
// 2^53 bytes (8 PiB), well above any disk this product will see.
func MarshalInt64(n int64) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
	})
}

// UnmarshalInt64 reads a byte count from a JSON number or from a string with a unit
// ("500MiB", "4GB"), as people type quotas. Null reads as 0 so that optional inputs bound to
// plain int64 fields keep their zero value.
func UnmarshalInt64(v any) (int64, error) {
	var n int64
	switch v := v.(type) {
	case nil:
		return 0, nil
	case string:
		return size.Parse(v)
	case json.Number:
		i, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, shared.Errorf(shared.CodeInvalidInput, "invalid size %s: want a whole number of bytes", v)
		}
		n = i
	case int:
		n = int64(v)
	case int32:
		n = int64(v)
	case int64:
		n = v
	case float64:
		// JSON decoders without UseNumber hand us float64; accept whole values only.
		if v != math.Trunc(v) || v >= math.MaxInt64 || v <= math.MinInt64 {
			return 0, shared.Errorf(shared.CodeInvalidInput, "invalid size %v: want a whole number of bytes", v)
		}
		n = int64(v)
	default:
		return 0, shared.Errorf(shared.CodeInvalidInput, "invalid size: want a number of bytes or a string such as \"500MiB\"")
	}
	if n < 0 {
		return 0, shared.Errorf(shared.CodeInvalidInput, "invalid size %d: sizes are not negative", n)
	}
	return n, nil
}

// MarshalDuration writes a duration in Go syntax ("720h0m0s").
func MarshalDuration(d time.Duration) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(d.String()))
	})
}

const day = 24 * time.Hour

// UnmarshalDuration reads a non-negative duration in Go syntax ("720h", "90m") with an extra
// leading whole-day part ("30d", "1d12h"), because retention and token lifetimes are thought
// of in days. Null reads as 0.
func UnmarshalDuration(v any) (time.Duration, error) {
	if v == nil {
		return 0, nil
	}
	s, ok := v.(string)
	if !ok {
		return 0, shared.Errorf(shared.CodeInvalidInput, "invalid duration: want a string such as \"30d\", \"720h\" or \"90m\"")
	}
	return ParseDuration(s)
}

// ParseDuration is UnmarshalDuration for a string.
func ParseDuration(s string) (time.Duration, error) {
	bad := func(why string) (time.Duration, error) {
		if len(s) > 64 {
			s = s[:64] + "…"
		}
		return 0, shared.Errorf(shared.CodeInvalidInput, "invalid duration %q: %s", s, why)
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return bad("empty")
	}
	var days time.Duration
	if i := strings.IndexByte(t, 'd'); i >= 0 {
		n, err := strconv.ParseInt(t[:i], 10, 64)
		if err != nil || n < 0 {
			return bad("want whole days before \"d\", as in \"30d\"")
		}
		if n > int64(math.MaxInt64/day) {
			return bad("too long")
		}
		days = time.Duration(n) * day
		t = t[i+1:]
		if t == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return bad("want Go syntax such as \"720h\" or \"90m\", or days such as \"30d\"")
	}
	if d < 0 {
		return bad("durations are not negative")
	}
	if d > math.MaxInt64-days {
		return bad("too long")
	}
	return days + d, nil
}

// MarshalTime writes an RFC 3339 time.
func MarshalTime(t time.Time) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(t.Format(time.RFC3339Nano)))
	})
}

// UnmarshalTime reads an RFC 3339 time. Null reads as the zero time.
func UnmarshalTime(v any) (time.Time, error) {
	if v == nil {
		return time.Time{}, nil
	}
	s, ok := v.(string)
	if !ok {
		return time.Time{}, shared.Errorf(shared.CodeInvalidInput, "invalid time: want an RFC 3339 string")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, shared.Errorf(shared.CodeInvalidInput, "invalid time %q: want RFC 3339, such as \"2030-01-02T15:04:05Z\"", s)
	}
	return t, nil
}

// MarshalInt64ID writes a numeric id as a GraphQL ID, which is always a string on the wire.
func MarshalInt64ID(id int64) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(strconv.FormatInt(id, 10)))
	})
}

// UnmarshalInt64ID reads a numeric id given as a string or a number.
func UnmarshalInt64ID(v any) (int64, error) {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case json.Number:
		s = string(v)
	case int64:
		return v, nil
	case int:
		return int64(v), nil
	default:
		return 0, shared.Errorf(shared.CodeInvalidInput, "invalid id: want a decimal number")
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, shared.Errorf(shared.CodeInvalidInput, "invalid id %q: want a decimal number", s)
	}
	return id, nil
}

// MarshalStringMap writes a map of strings as a JSON object with sorted keys, so that equal
// maps always print the same.
func MarshalStringMap(m map[string]string) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		_, _ = io.WriteString(w, "{")
		for i, k := range keys {
			if i > 0 {
				_, _ = io.WriteString(w, ",")
			}
			writeJSONString(w, k)
			_, _ = io.WriteString(w, ":")
			writeJSONString(w, m[k])
		}
		_, _ = io.WriteString(w, "}")
	})
}

// UnmarshalStringMap reads a JSON object whose values are all strings.
func UnmarshalStringMap(v any) (map[string]string, error) {
	if v == nil {
		return nil, nil
	}
	in, ok := v.(map[string]any)
	if !ok {
		return nil, shared.Errorf(shared.CodeInvalidInput, "invalid map: want an object of strings")
	}
	out := make(map[string]string, len(in))
	for k, x := range in {
		s, ok := x.(string)
		if !ok {
			return nil, shared.Errorf(shared.CodeInvalidInput, "invalid map: value of %q is not a string", k)
		}
		out[k] = s
	}
	return out, nil
}

func writeJSONString(w io.Writer, s string) {
	// json.Marshal of a string cannot fail; it also escapes HTML-sensitive characters, which
	// is harmless in a JSON API.
	b, _ := json.Marshal(s)
	_, _ = w.Write(b)
}
