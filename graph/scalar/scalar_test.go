package scalar

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"backuprepo/shared"
)

func wantInvalid(t *testing.T, err error) {
	t.Helper()
	var e *shared.Error
	if !errors.As(err, &e) || e.Code != shared.CodeInvalidInput {
		t.Fatalf("err = %v, want a *shared.Error with code INVALID_INPUT", err)
	}
}

func TestUnmarshalInt64(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want int64
		bad  bool
	}{
		{in: "500MiB", want: 524288000},
		{in: "4GB", want: 4000000000},
		{in: "1024", want: 1024},
		{in: int64(7), want: 7},
		{in: 8, want: 8},
		{in: json.Number("9007199254740993"), want: 9007199254740993},
		{in: float64(2048), want: 2048},
		{in: nil, want: 0},
		{in: "", bad: true},
		{in: "12 parsecs", bad: true},
		{in: "-1", bad: true},
		{in: int64(-1), bad: true},
		{in: json.Number("1.5"), bad: true},
		{in: float64(1.5), bad: true},
		{in: true, bad: true},
		{in: "99999999999EiB", bad: true},
	}
	for _, tt := range tests {
		got, err := UnmarshalInt64(tt.in)
		if tt.bad {
			wantInvalid(t, err)
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("UnmarshalInt64(%#v) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func marshalled(t *testing.T, m interface{ MarshalGQL(w io.Writer) }) string {
	t.Helper()
	var b bytes.Buffer
	m.MarshalGQL(&b)
	return b.String()
}

func TestMarshal(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"int64 is a JSON number", marshalled(t, MarshalInt64(4000000000)), `4000000000`},
		{"duration in Go syntax", marshalled(t, MarshalDuration(30*24*time.Hour)), `"720h0m0s"`},
		{"time in RFC 3339", marshalled(t, MarshalTime(at)), `"2030-01-02T15:04:05Z"`},
		{"int64 id is a string", marshalled(t, MarshalInt64ID(42)), `"42"`},
		{"string map sorted and escaped", marshalled(t, MarshalStringMap(map[string]string{"b": "2", "a": "\"x\""})), `{"a":"\"x\"","b":"2"}`},
		{"empty string map", marshalled(t, MarshalStringMap(nil)), `{}`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestUnmarshalDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want time.Duration
		bad  bool
	}{
		{in: "30d", want: 720 * time.Hour},
		{in: "720h", want: 720 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "0d", want: 0},
		{in: nil, want: 0},
		{in: "", bad: true},
		{in: "d", bad: true},
		{in: "30days", bad: true},
		{in: "-1h", bad: true},
		{in: "-1d", bad: true},
		{in: "1.5d", bad: true},
		{in: "200000d", bad: true},
		{in: "106751d24h", bad: true},
		{in: "5 minutes", bad: true},
		{in: 3600, bad: true},
	}
	for _, tt := range tests {
		got, err := UnmarshalDuration(tt.in)
		if tt.bad {
			wantInvalid(t, err)
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("UnmarshalDuration(%#v) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestUnmarshalTime(t *testing.T) {
	t.Parallel()
	got, err := UnmarshalTime("2030-01-02T15:04:05.5+02:00")
	want := time.Date(2030, 1, 2, 13, 4, 5, 5e8, time.UTC)
	if err != nil || !got.Equal(want) {
		t.Errorf("UnmarshalTime = %v, %v; want %v", got, err, want)
	}
	for _, in := range []any{"2030-01-02", "yesterday", 1700000000} {
		_, err := UnmarshalTime(in)
		wantInvalid(t, err)
	}
}

func TestUnmarshalInt64ID(t *testing.T) {
	t.Parallel()
	for _, in := range []any{"42", json.Number("42"), int64(42), 42} {
		if got, err := UnmarshalInt64ID(in); err != nil || got != 42 {
			t.Errorf("UnmarshalInt64ID(%#v) = %d, %v; want 42", in, got, err)
		}
	}
	_, err := UnmarshalInt64ID("x42")
	wantInvalid(t, err)
}

func TestUnmarshalStringMap(t *testing.T) {
	t.Parallel()
	got, err := UnmarshalStringMap(map[string]any{"k": "v"})
	if err != nil || len(got) != 1 || got["k"] != "v" {
		t.Errorf("UnmarshalStringMap = %v, %v", got, err)
	}
	_, err = UnmarshalStringMap(map[string]any{"k": 1})
	wantInvalid(t, err)
	_, err = UnmarshalStringMap("k=v")
	wantInvalid(t, err)
}
