package window

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"backuprepo/shared"
)

func at(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func mustParse(t *testing.T, expr string) Schedule {
	t.Helper()
	s, err := Parse(expr)
	if err != nil {
		t.Fatalf("Parse(%q): %v", expr, err)
	}
	return s
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ expr, mention string }{
		{"", "want 5 fields"},
		{"* * * *", "want 5 fields"},
		{"* * * * * *", "want 5 fields"},
		{"60 * * * *", "out of range 0-59"},
		{"* 24 * * *", "out of range 0-23"},
		{"* * 0 * *", "out of range 1-31"},
		{"* * 32 * *", "out of range 1-31"},
		{"* * * 0 *", "out of range 1-12"},
		{"* * * 13 *", "out of range 1-12"},
		{"* * * * 8", "out of range 0-7"},
		{"-1 * * * *", "not a number"},
		{"5-1 * * * *", "backwards"},
		{"*/0 * * * *", "not a positive number"},
		{"*/-1 * * * *", "not a positive number"},
		{"*/61 * * * *", "larger than the field's range"},
		{"*/x * * * *", "not a positive number"},
		{"1,,2 * * * *", "empty list element"},
		{"1, * * * *", "empty list element"},
		{"a * * * *", "not a number or name"},
		{"* * * FOO *", "not a number or name"},
		{"* * * * MONDAY", "not a number or name"},
		{"* * * JAN-FEB-MAR *", "not a number or name"},
		{"1/2/3 * * * *", "not a positive number"},
		{"007 * * * *", "not a number"},
		{"? * * * *", "not a number"},
		{"0 0 30 2 *", "never occurs"},
		{"0 0 31 4,6,9,11 *", "never occurs"},
		{"@daily", "want 5 fields"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.expr)
		var se *shared.Error
		if !errors.As(err, &se) || se.Code != shared.CodeInvalidInput {
			t.Errorf("Parse(%q) = %v, want an INVALID_INPUT error", tt.expr, err)
			continue
		}
		if !strings.Contains(se.Message, tt.mention) {
			t.Errorf("Parse(%q) message %q does not mention %q", tt.expr, se.Message, tt.mention)
		}
	}
}

func TestParseEquivalents(t *testing.T) {
	t.Parallel()
	// Each pair must parse to the same schedule.
	pairs := [][2]string{
		{"0 0 * * 0", "0 0 * * 7"},
		{"0 0 * * SUN", "0 0 * * sun"},
		{"0 0 * * MON-FRI", "0 0 * * 1-5"},
		{"0 0 * * 5-7", "0 0 * * 0,5,6"},
		{"0 0 * JAN,jun,Dec *", "0 0 * 1,6,12 *"},
		{"0 0 * mar-MAY *", "0 0 * 3-5 *"},
		{"*/15 * * * *", "0,15,30,45 * * * *"},
		{"1-10/2 * * * *", "1,3,5,7,9 * * * *"},
		{"5/20 * * * *", "5,25,45 * * * *"},
		{"0 */6 * * *", "0 0,6,12,18 * * *"},
		{"0  2\t* * *", "0 2 * * *"},
	}
	for _, p := range pairs {
		a, b := mustParse(t, p[0]), mustParse(t, p[1])
		a.expr, b.expr = "", ""
		if a != b {
			t.Errorf("Parse(%q) = %+v differs from Parse(%q) = %+v", p[0], a, p[1], b)
		}
	}
}

func TestPrevNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr       string
		now        string
		prev, next string // "" = zero time
	}{
		{"0 2 * * *", "2025-03-10 12:00", "2025-03-10 02:00", "2025-03-11 02:00"},
		{"0 2 * * *", "2025-03-10 02:00", "2025-03-10 02:00", "2025-03-11 02:00"},
		{"0 2 * * *", "2025-03-10 01:59", "2025-03-09 02:00", "2025-03-10 02:00"},
		{"0 2 * * *", "2025-01-01 00:00", "2024-12-31 02:00", "2025-01-01 02:00"},
		{"*/15 * * * *", "2025-03-10 12:14", "2025-03-10 12:00", "2025-03-10 12:15"},
		{"*/15 * * * *", "2025-03-10 00:05", "2025-03-10 00:00", "2025-03-10 00:15"},
		{"*/15 * * * *", "2025-03-10 23:59", "2025-03-10 23:45", "2025-03-11 00:00"},
		{"30 22 * * MON-FRI", "2025-03-09 10:00", "2025-03-07 22:30", "2025-03-10 22:30"}, // Sunday
		{"30 22 * * 0", "2025-03-12 10:00", "2025-03-09 22:30", "2025-03-16 22:30"},
		{"30 22 * * 7", "2025-03-12 10:00", "2025-03-09 22:30", "2025-03-16 22:30"},
		{"0 0 1 * *", "2025-03-15 00:00", "2025-03-01 00:00", "2025-04-01 00:00"},
		{"0 0 31 * *", "2025-05-01 00:00", "2025-03-31 00:00", "2025-05-31 00:00"},
		{"0 0 29 2 *", "2025-06-01 00:00", "2024-02-29 00:00", "2028-02-29 00:00"},
		{"0 0 29 2 *", "2024-02-29 00:00", "2024-02-29 00:00", "2028-02-29 00:00"},
		// 2100 is not a leap year: 2096 to 2104 is eight years, still inside the bound.
		{"0 0 29 2 *", "2103-01-01 00:00", "2096-02-29 00:00", "2104-02-29 00:00"},
		{"0 12 * JAN *", "2025-06-01 00:00", "2025-01-31 12:00", "2026-01-01 12:00"},
		{"59 23 31 DEC *", "2025-12-31 23:58", "2024-12-31 23:59", "2025-12-31 23:59"},
		// Both day fields restricted: the 13th OR any Friday.
		{"0 0 13 * FRI", "2025-06-12 00:00", "2025-06-06 00:00", "2025-06-13 00:00"},
		{"0 0 13 * FRI", "2025-06-14 00:00", "2025-06-13 00:00", "2025-06-20 00:00"},
		{"0 0 13 * FRI", "2025-06-16 00:00", "2025-06-13 00:00", "2025-06-20 00:00"},
		{"0 0 13 * FRI", "2025-07-14 00:00", "2025-07-13 00:00", "2025-07-18 00:00"}, // a Sunday the 13th
		// A '*'-based day-of-month keeps AND semantics: odd days that are Mondays.
		{"0 0 */2 * MON", "2025-06-10 00:00", "2025-06-09 00:00", "2025-06-23 00:00"},
		{"15 3 * * *", "2025-03-10 03:15", "2025-03-10 03:15", "2025-03-11 03:15"},
	}
	for _, tt := range tests {
		s := mustParse(t, tt.expr)
		now := at(tt.now)
		// Seconds are ignored: a fire at 02:00 counts at 02:00:59.
		if got := s.Prev(now.Add(59 * time.Second)); !got.Equal(at(tt.prev)) {
			t.Errorf("%q Prev(%s) = %s, want %s", tt.expr, tt.now, got, tt.prev)
		}
		if got := s.Next(now); !got.Equal(at(tt.next)) {
			t.Errorf("%q Next(%s) = %s, want %s", tt.expr, tt.now, got, tt.next)
		}
	}
}

func TestPrevUsesUTC(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "0 2 * * *")
	zone := time.FixedZone("UTC+5", 5*3600)
	now := time.Date(2025, 3, 10, 6, 30, 0, 0, zone) // 01:30 UTC
	if got, want := s.Prev(now), at("2025-03-09 02:00"); !got.Equal(want) || got.Location() != time.UTC {
		t.Fatalf("Prev = %s, want %s in UTC", got, want)
	}
}

func TestPrevZeroAndBound(t *testing.T) {
	t.Parallel()
	if got := (Schedule{}).Prev(at("2025-01-01 00:00")); !got.IsZero() {
		t.Errorf("zero Schedule Prev = %s, want zero", got)
	}
	// Feb 29 falling on a Sunday with AND semantics ('*'-based dom) happens every 28 years:
	// 2004 and 2032. From 2020 neither is within 8 years.
	s := mustParse(t, "0 0 29 2 */7")
	if got := s.Prev(at("2020-01-01 00:00")); !got.IsZero() {
		t.Errorf("Prev beyond the bound = %s, want zero", got)
	}
	if got := s.Next(at("2020-01-01 00:00")); !got.IsZero() {
		t.Errorf("Next beyond the bound = %s, want zero", got)
	}
	if got := s.Prev(at("2010-01-01 00:00")); !got.Equal(at("2004-02-29 00:00")) {
		t.Errorf("Prev = %s, want 2004-02-29", got)
	}
}

func TestPrevFastForRareSchedules(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "0 0 29 2 *")
	start := time.Now()
	for i := 0; i < 1000; i++ {
		s.Prev(at("2027-12-31 23:59"))
	}
	// A minute-by-minute scan would take seconds per call; field stepping takes microseconds.
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("1000 Prev calls took %s", d)
	}
}

// bruteNext scans minute by minute; it is the slow reference the fast walk is checked against.
func bruteNext(s Schedule, t time.Time, limit time.Duration) time.Time {
	t = t.UTC().Truncate(time.Minute)
	for c := t.Add(time.Minute); c.Sub(t) <= limit; c = c.Add(time.Minute) {
		if s.Matches(c) {
			return c
		}
	}
	return time.Time{}
}

func brutePrev(s Schedule, t time.Time, limit time.Duration) time.Time {
	t = t.UTC().Truncate(time.Minute)
	for c := t; t.Sub(c) <= limit; c = c.Add(-time.Minute) {
		if s.Matches(c) {
			return c
		}
	}
	return time.Time{}
}

func TestPrevNextAgainstBruteForce(t *testing.T) {
	t.Parallel()
	exprs := []string{
		"* * * * *", "*/7 * * * *", "13 */5 * * *", "0 9-17 * * MON-FRI", "45 23 * * 6,0",
		"0 0 1,15 * *", "0 0 13 * 5", "10 4 */3 * 2", "0 0 31 * *", "5/20 1-3 * FEB,AUG *",
		"0 6 13 * FRI", "*/10 */6 */2 */3 */2",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	base := at("2023-01-01 00:00")
	for _, e := range exprs {
		s := mustParse(t, e)
		for i := 0; i < 20; i++ {
			now := base.Add(time.Duration(rng.Int64N(int64(3 * 365 * 24 * time.Hour)))).Add(time.Duration(rng.IntN(60)) * time.Second)
			limit := 35 * 24 * time.Hour
			if want, got := brutePrev(s, now, limit), s.Prev(now); !want.IsZero() && !got.Equal(want) {
				t.Fatalf("%q Prev(%s) = %s, brute force %s", e, now, got, want)
			}
			if want, got := bruteNext(s, now, limit), s.Next(now); !want.IsZero() && !got.Equal(want) {
				t.Fatalf("%q Next(%s) = %s, brute force %s", e, now, got, want)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := [][]shared.Window{
		nil,
		{},
		{{From: "0 2 * * *", Duration: 4 * time.Hour}},
		{{From: "0 2 * * *", Duration: time.Minute}, {From: "0 0 * * SUN", Duration: MaxDuration}},
	}
	for _, ws := range ok {
		if err := Validate(ws); err != nil {
			t.Errorf("Validate(%v) = %v", ws, err)
		}
	}
	bad := []struct {
		ws      []shared.Window
		mention string
	}{
		{[]shared.Window{{From: "0 2 * *", Duration: time.Hour}}, "window 1: invalid cron"},
		{[]shared.Window{{From: "0 2 * * *", Duration: time.Hour}, {From: "0 25 * * *", Duration: time.Hour}}, "window 2: invalid cron"},
		{[]shared.Window{{From: "0 2 * * *", Duration: 0}}, `window 1 ("0 2 * * *"): duration 0s`},
		{[]shared.Window{{From: "0 2 * * *", Duration: -time.Hour}}, "window 1"},
		{[]shared.Window{{From: "0 2 * * *", Duration: MaxDuration + time.Second}}, "at most 168h0m0s"},
		{[]shared.Window{{From: "0 0 30 2 *", Duration: time.Hour}}, "never occurs"},
	}
	for _, tt := range bad {
		err := Validate(tt.ws)
		var se *shared.Error
		if !errors.As(err, &se) || se.Code != shared.CodeInvalidInput {
			t.Errorf("Validate(%v) = %v, want INVALID_INPUT", tt.ws, err)
			continue
		}
		if !strings.Contains(se.Message, tt.mention) {
			t.Errorf("Validate(%v) message %q does not mention %q", tt.ws, se.Message, tt.mention)
		}
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	nightly := shared.Window{From: "0 2 * * *", Duration: 4 * time.Hour}    // 02:00-06:00
	weekend := shared.Window{From: "0 0 * * SAT", Duration: 48 * time.Hour} // all weekend
	tests := []struct {
		ws   []shared.Window
		now  string
		want bool
	}{
		{nil, "2025-03-10 12:00", true},
		{[]shared.Window{}, "2025-03-10 12:00", true},
		{[]shared.Window{nightly}, "2025-03-10 01:59", false},
		{[]shared.Window{nightly}, "2025-03-10 02:00", true},
		{[]shared.Window{nightly}, "2025-03-10 05:59", true},
		{[]shared.Window{nightly}, "2025-03-10 06:00", false}, // the end is exclusive
		{[]shared.Window{nightly}, "2025-03-10 12:00", false},
		{[]shared.Window{nightly, weekend}, "2025-03-08 12:00", true}, // Saturday
		{[]shared.Window{nightly, weekend}, "2025-03-09 23:59", true}, // Sunday
		{[]shared.Window{nightly, weekend}, "2025-03-10 00:00", false},
		{[]shared.Window{nightly, weekend}, "2025-03-10 03:00", true},
		// Windows spanning midnight and longer than the period between fires.
		{[]shared.Window{{From: "0 22 * * *", Duration: 4 * time.Hour}}, "2025-03-10 01:30", true},
		{[]shared.Window{{From: "0 */2 * * *", Duration: 3 * time.Hour}}, "2025-03-10 03:30", true},
		// A window that does not parse never opens.
		{[]shared.Window{{From: "bogus", Duration: time.Hour}}, "2025-03-10 03:30", false},
	}
	for _, tt := range tests {
		if got := Open(tt.ws, at(tt.now)); got != tt.want {
			t.Errorf("Open(%v, %s) = %v, want %v", tt.ws, tt.now, got, tt.want)
		}
	}
	// Seconds count: 05:59:59 is still inside a window ending at 06:00.
	if !Open([]shared.Window{nightly}, at("2025-03-10 05:59").Add(59*time.Second)) {
		t.Error("Open at 05:59:59 = false")
	}
}

func TestLatest(t *testing.T) {
	t.Parallel()
	nightly := shared.Window{From: "0 2 * * *", Duration: 4 * time.Hour}
	weekly := shared.Window{From: "0 2 * * SUN", Duration: 24 * time.Hour}
	tests := []struct {
		ws         []shared.Window
		now        string
		start, end string
		ok         bool
	}{
		{nil, "2025-03-10 12:00", "", "", false},
		{[]shared.Window{nightly}, "2025-03-10 12:00", "2025-03-10 02:00", "2025-03-10 06:00", true},
		{[]shared.Window{nightly}, "2025-03-10 01:00", "2025-03-09 02:00", "2025-03-09 06:00", true},
		// Sunday 2025-03-09: both start at 02:00, the longer one wins.
		{[]shared.Window{nightly, weekly}, "2025-03-09 12:00", "2025-03-09 02:00", "2025-03-10 02:00", true},
		{[]shared.Window{weekly, nightly}, "2025-03-09 12:00", "2025-03-09 02:00", "2025-03-10 02:00", true},
		{[]shared.Window{weekly, nightly}, "2025-03-12 12:00", "2025-03-12 02:00", "2025-03-12 06:00", true},
		{[]shared.Window{{From: "bad", Duration: time.Hour}}, "2025-03-12 12:00", "", "", false},
	}
	for _, tt := range tests {
		start, end, ok := Latest(tt.ws, at(tt.now))
		if ok != tt.ok {
			t.Errorf("Latest(%v, %s) ok = %v, want %v", tt.ws, tt.now, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		if !start.Equal(at(tt.start)) || !end.Equal(at(tt.end)) {
			t.Errorf("Latest(%v, %s) = %s..%s, want %s..%s", tt.ws, tt.now, start, end, tt.start, tt.end)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 2 * * *", "*/15 * * * *", "1-10/2 0 1,15 JAN-mar sun-SAT", "0 0 29 2 *",
		"5/20 * * * 7", "0 0 30 2 *", "* * * * * *", "60 * * * *", "a-b/c * * * *", "0 0 13 * FRI"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		s, err := Parse(expr)
		if err != nil {
			var se *shared.Error
			if !errors.As(err, &se) || se.Code != shared.CodeInvalidInput {
				t.Fatalf("Parse(%q) error %v is not INVALID_INPUT", expr, err)
			}
			return
		}
		again, err := Parse(s.String())
		if err != nil || again != s {
			t.Fatalf("Parse(%q).String() = %q does not parse back to the same schedule: %v", expr, s.String(), err)
		}
	})
}

func FuzzPrev(f *testing.F) {
	f.Add("0 2 * * *", int64(1741600800))
	f.Add("*/15 * * * *", int64(1741600799))
	f.Add("0 0 29 2 *", int64(1900000000))
	f.Add("0 0 13 * FRI", int64(1749772800))
	f.Add("59 23 31 DEC *", int64(0))
	f.Add("0 0 29 2 */7", int64(1577836800))
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := Parse(expr)
		if err != nil {
			return
		}
		// Keep times in years 1970..2500 where calendar arithmetic is exact and cheap.
		const span = int64(530 * 365 * 24 * 3600)
		unix %= span
		if unix < 0 {
			unix += span
		}
		now := time.Unix(unix, 0).UTC()
		p := s.Prev(now)
		if p.IsZero() {
			// Only schedules restricted to rare calendar days may not fire within 8 years.
			if n := s.Next(now.AddDate(-searchYears, 0, 0)); !n.IsZero() && !n.After(now) && now.Sub(n) < 7*365*24*time.Hour {
				t.Fatalf("%q Prev(%s) = zero but it fires at %s", expr, now, n)
			}
			return
		}
		if p.After(now) {
			t.Fatalf("%q Prev(%s) = %s is after now", expr, now, p)
		}
		if !s.Matches(p) || p.Second() != 0 || p.Nanosecond() != 0 {
			t.Fatalf("%q Prev(%s) = %s is not a fire time", expr, now, p)
		}
		if n := s.Next(p); !n.IsZero() && !n.After(now) {
			t.Fatalf("%q Prev(%s) = %s but %s fires in between", expr, now, p, n)
		}
		if n := s.Next(p.Add(-time.Minute)); !n.Equal(p) {
			t.Fatalf("%q Next(Prev(%s) - 1m) = %s, want %s", expr, now, n, p)
		}
	})
}
