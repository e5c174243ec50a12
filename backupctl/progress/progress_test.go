package progress

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		done, total int64
		elapsed     time.Duration
		bar         bool
		want        string
	}{
		{"known size on a terminal", 512 << 20, 1 << 30, 8 * time.Second, true,
			"up [############............]  50% 512.0 MiB / 1.0 GiB 64.0 MiB/s ETA 8s"},
		{"known size in a log", 3 << 20, 4 << 20, 2 * time.Second, false,
			"up  75% 3.0 MiB / 4.0 MiB 1.5 MiB/s ETA 1s"},
		{"unknown size", 1536, -1, time.Second, true, "up 1.5 KiB 1.5 KiB/s"},
		{"nothing yet", 0, 100, 0, false, "up   0% 0 B / 100 B 0 B/s ETA --"},
		{"finished", 100, 100, time.Second, true, "up [########################] 100% 100 B / 100 B 100 B/s"},
		{"empty", 0, 0, time.Second, false, "up 100% 0 B / 0 B 0 B/s"},
		{"long ETA", 1 << 20, 10 << 30, 10 * time.Second, false, "up   0% 1.0 MiB / 10.0 GiB 102.4 KiB/s ETA 28h27m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Line("up", tc.done, tc.total, tc.elapsed, tc.bar); got != tc.want {
				t.Errorf("Line = %q\nwant   %q", got, tc.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", 1499 * time.Millisecond: "1s", 59 * time.Second: "59s", 65 * time.Second: "1m05s",
		3*time.Hour + 7*time.Minute + 50*time.Second: "3h08m",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
	}
}

// syncBuffer lets the meter's goroutine write while the test reads.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

func TestMeterLogsPlainLinesWhenNotATerminal(t *testing.T) {
	t.Parallel()
	out := &syncBuffer{mu: make(chan struct{}, 1)}
	m := Start(out, "upload", 1000, Options{Interval: 5 * time.Millisecond})
	if _, err := io.Copy(io.Discard, m.Reader(strings.NewReader(strings.Repeat("x", 600)))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	m.Finish(false)
	got := out.String()
	if strings.Contains(got, "\r") || strings.Contains(got, "\033") {
		t.Fatalf("control characters in a log: %q", got)
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) < 2 {
		t.Fatalf("want periodic lines and a final one, got %q", got)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "60% 600 B / 1000 B") || !strings.HasSuffix(last, " failed") {
		t.Fatalf("final line = %q", last)
	}
}

func TestMeterRedrawsOnATerminal(t *testing.T) {
	t.Parallel()
	out := &syncBuffer{mu: make(chan struct{}, 1)}
	m := Start(out, "download", -1, Options{Terminal: true, Interval: 5 * time.Millisecond})
	m.Set(2048)
	time.Sleep(30 * time.Millisecond)
	m.SetTotal(2048)
	m.Finish(true)
	got := out.String()
	if !strings.HasPrefix(got, "\r\033[Kdownload 2.0 KiB") || strings.Count(got, "\n") != 1 {
		t.Fatalf("terminal output = %q", got)
	}
	if !regexp.MustCompile(`\r\033\[Kdownload \[#{24}\] 100% 2.0 KiB / 2.0 KiB [0-9.]+ KiB/s done\n$`).MatchString(got) {
		t.Fatalf("final = %q", got)
	}
}
