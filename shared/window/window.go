// Package window decides whether a collection's backup windows (5-field cron start plus a
// duration) are open at a given time.
package window

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"backuprepo/shared"
)

// MaxDuration is the longest a window may stay open.
const MaxDuration = 7 * 24 * time.Hour

// searchYears bounds Prev and Next: a schedule such as "0 0 29 2 *" fires at least every 8
// years (leap years may be 8 apart around 2100), anything rarer is treated as never.
const searchYears = 8

// Schedule is a parsed 5-field cron expression, evaluated in UTC. Each field is a bit set:
// bit i set means value i matches.
type Schedule struct {
	expr    string
	minute  uint64 // 0-59
	hour    uint64 // 0-23
	dom     uint64 // 1-31
	month   uint64 // 1-12
	dow     uint64 // 0-6, Sunday = 0
	domStar bool   // the day-of-month field started with '*'
	dowStar bool   // the day-of-week field started with '*'
}

type field struct {
	name     string
	min, max int
	names    []string // names[i] is the value min+i; nil if the field has no names
}

var (
	monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
	dayNames   = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}
)

// Parse reads a standard 5-field cron expression: minute, hour, day of month, month, day of
// week. Fields take '*', numbers, names (JAN-DEC, SUN-SAT, case-insensitive), ranges
// ("1-5"), lists ("1,15"), and steps ("*/15", "1-10/2", "5/20" = from 5 to the end by 20).
// Day of week 0 and 7 are both Sunday. As in Vixie cron, when both day fields are restricted
// (neither starts with '*') a day matches if either matches. Errors are *shared.Error with
// code INVALID_INPUT; an expression that can never fire (such as "0 0 30 2 *") is an error.
func Parse(expr string) (Schedule, error) {
	fs := strings.Fields(expr)
	if len(fs) != 5 {
		return Schedule{}, invalid(expr, fmt.Sprintf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(fs)))
	}
	s := Schedule{expr: strings.Join(fs, " ")}
	var err error
	if s.minute, err = parseField(fs[0], field{name: "minute", min: 0, max: 59}); err != nil {
		return Schedule{}, invalid(expr, err.Error())
	}
	if s.hour, err = parseField(fs[1], field{name: "hour", min: 0, max: 23}); err != nil {
		return Schedule{}, invalid(expr, err.Error())
	}
	if s.dom, err = parseField(fs[2], field{name: "day-of-month", min: 1, max: 31}); err != nil {
		return Schedule{}, invalid(expr, err.Error())
	}
	if s.month, err = parseField(fs[3], field{name: "month", min: 1, max: 12, names: monthNames}); err != nil {
		return Schedule{}, invalid(expr, err.Error())
	}
	// 7 is accepted as a second Sunday so that ranges such as "5-7" work, then folded onto 0.
	if s.dow, err = parseField(fs[4], field{name: "day-of-week", min: 0, max: 7, names: dayNames}); err != nil {
		return Schedule{}, invalid(expr, err.Error())
	}
	if s.dow&(1<<7) != 0 {
		s.dow = s.dow&^(1<<7) | 1
	}
	s.domStar = strings.HasPrefix(fs[2], "*")
	s.dowStar = strings.HasPrefix(fs[4], "*")
	if !s.canFire() {
		return Schedule{}, invalid(expr, "the day-of-month never occurs in the chosen months")
	}
	return s, nil
}

func invalid(expr, why string) *shared.Error {
	return shared.Errorf(shared.CodeInvalidInput, "invalid cron expression %q: %s", expr, why)
}

// daysIn is the longest each month can be (February in a leap year).
var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

// canFire rejects day-of-month/month combinations that never exist. A restricted
// day-of-week always finds days: with OR semantics through the weekday itself, and with a
// '*'-based day-of-month that always includes the 1st.
func (s Schedule) canFire() bool {
	if !s.dowStar {
		return true
	}
	for m := 1; m <= 12; m++ {
		if s.month&(1<<m) != 0 && s.dom&(1<<(daysIn[m]+1)-1) != 0 {
			return true
		}
	}
	return false
}

func parseField(txt string, f field) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(txt, ",") {
		b, err := parsePart(part, f)
		if err != nil {
			return 0, fmt.Errorf("%s field %q: %w", f.name, txt, err)
		}
		set |= b
	}
	return set, nil
}

func parsePart(part string, f field) (uint64, error) {
	if part == "" {
		return 0, fmt.Errorf("empty list element")
	}
	rng, stepTxt, hasStep := strings.Cut(part, "/")
	step := 1
	if hasStep {
		n, err := strconv.Atoi(stepTxt)
		if err != nil || n < 1 || !allDigits(stepTxt) {
			return 0, fmt.Errorf("step %q is not a positive number", stepTxt)
		}
		if n > f.max-f.min+1 {
			return 0, fmt.Errorf("step %d is larger than the field's range %d-%d", n, f.min, f.max)
		}
		step = n
	}
	var lo, hi int
	switch {
	case rng == "*":
		lo, hi = f.min, f.max
	case strings.Contains(rng, "-"):
		a, b, _ := strings.Cut(rng, "-")
		var err error
		if lo, err = value(a, f); err != nil {
			return 0, err
		}
		if hi, err = value(b, f); err != nil {
			return 0, err
		}
		if lo > hi {
			return 0, fmt.Errorf("range %q runs backwards", rng)
		}
	default:
		var err error
		if lo, err = value(rng, f); err != nil {
			return 0, err
		}
		hi = lo
		if hasStep {
			// "5/20" means from 5 to the end of the range, as most crons read it.
			hi = f.max
		}
	}
	var set uint64
	for v := lo; v <= hi; v += step {
		set |= 1 << v
	}
	return set, nil
}

func value(txt string, f field) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(txt, n) {
			return f.min + i, nil
		}
	}
	if txt == "" || !allDigits(txt) || len(txt) > 2 {
		return 0, fmt.Errorf("%q is not a number or name", txt)
	}
	n, _ := strconv.Atoi(txt)
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("value %d out of range %d-%d", n, f.min, f.max)
	}
	return n, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// String returns the expression with its fields separated by single spaces.
func (s Schedule) String() string { return s.expr }

func (s Schedule) dayMatches(t time.Time) bool {
	domOK := s.dom&(1<<t.Day()) != 0
	dowOK := s.dow&(1<<int(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return domOK && dowOK
	}
	return domOK || dowOK
}

// Matches reports whether the schedule fires at t's minute (in UTC).
func (s Schedule) Matches(t time.Time) bool {
	t = t.UTC()
	return s.month&(1<<int(t.Month())) != 0 && s.dayMatches(t) &&
		s.hour&(1<<t.Hour()) != 0 && s.minute&(1<<t.Minute()) != 0
}

// highestAtMost returns the largest set bit of set that is <= v, or -1.
func highestAtMost(set uint64, v int) int {
	masked := set & (1<<(v+1) - 1)
	if masked == 0 {
		return -1
	}
	return 63 - bits.LeadingZeros64(masked)
}

// lowestAtLeast returns the smallest set bit of set that is >= v, or -1.
func lowestAtLeast(set uint64, v int) int {
	if v > 63 {
		return -1
	}
	masked := set &^ (1<<v - 1)
	if masked == 0 {
		return -1
	}
	return bits.TrailingZeros64(masked)
}

// Prev returns the latest fire time at or before t, to the minute, in UTC. It walks back
// field by field (month, day, hour, minute), so it costs at most a few thousand steps even
// for rare schedules. It returns the zero time for the zero Schedule or when the schedule
// does not fire within the 8 years before t.
func (s Schedule) Prev(t time.Time) time.Time {
	if s.minute == 0 {
		return time.Time{}
	}
	t = t.UTC().Truncate(time.Minute)
	limit := t.Year() - searchYears
	for t.Year() >= limit {
		y, mo, d := t.Date()
		if s.month&(1<<int(mo)) == 0 {
			// Jump to the last minute of the previous month.
			t = time.Date(y, mo, 1, 0, 0, 0, 0, time.UTC).Add(-time.Minute)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Add(-time.Minute)
			continue
		}
		h := highestAtMost(s.hour, t.Hour())
		if h < 0 {
			t = time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Add(-time.Minute)
			continue
		}
		if h < t.Hour() {
			t = time.Date(y, mo, d, h, 59, 0, 0, time.UTC)
		}
		m := highestAtMost(s.minute, t.Minute())
		if m < 0 {
			t = time.Date(y, mo, d, h, 0, 0, 0, time.UTC).Add(-time.Minute)
			continue
		}
		return time.Date(y, mo, d, h, m, 0, 0, time.UTC)
	}
	return time.Time{}
}

// Next returns the earliest fire time strictly after t, to the minute, in UTC, or the zero
// time when the schedule does not fire within the 8 years after t.
func (s Schedule) Next(t time.Time) time.Time {
	if s.minute == 0 {
		return time.Time{}
	}
	t = t.UTC().Truncate(time.Minute).Add(time.Minute)
	limit := t.Year() + searchYears
	for t.Year() <= limit {
		y, mo, d := t.Date()
		if s.month&(1<<int(mo)) == 0 {
			t = time.Date(y, mo+1, 1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if !s.dayMatches(t) {
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		h := lowestAtLeast(s.hour, t.Hour())
		if h < 0 {
			t = time.Date(y, mo, d+1, 0, 0, 0, 0, time.UTC)
			continue
		}
		if h > t.Hour() {
			t = time.Date(y, mo, d, h, 0, 0, 0, time.UTC)
		}
		m := lowestAtLeast(s.minute, t.Minute())
		if m < 0 {
			t = time.Date(y, mo, d, h+1, 0, 0, 0, time.UTC)
			continue
		}
		return time.Date(y, mo, d, h, m, 0, 0, time.UTC)
	}
	return time.Time{}
}

// Validate checks every window: a valid cron expression that can fire and a duration in
// (0, 7 days]. The error is a *shared.Error with code INVALID_INPUT naming the window.
func Validate(ws []shared.Window) error {
	for i, w := range ws {
		if _, err := Parse(w.From); err != nil {
			return shared.Errorf(shared.CodeInvalidInput, "window %d: %s", i+1, shared.ErrorMessage(err))
		}
		if w.Duration <= 0 || w.Duration > MaxDuration {
			return shared.Errorf(shared.CodeInvalidInput, "window %d (%q): duration %s must be more than 0 and at most %s",
				i+1, w.From, w.Duration, MaxDuration)
		}
	}
	return nil
}

// Open reports whether now lies in [previous fire, previous fire + duration) of any window.
// No windows means uploads are always allowed. Windows that do not parse never open; callers
// are expected to have validated them on save.
func Open(ws []shared.Window, now time.Time) bool {
	if len(ws) == 0 {
		return true
	}
	for _, w := range ws {
		s, err := Parse(w.From)
		if err != nil {
			continue
		}
		// The latest fire gives the latest end, so earlier fires need not be checked.
		if prev := s.Prev(now); !prev.IsZero() && now.Before(prev.Add(w.Duration)) {
			return true
		}
	}
	return false
}

// Latest returns the most recent window start at or before now across all windows, and
// when that window closes (or closed). When two windows start at the same minute the longer
// one wins. ok is false when there are no windows or none fired in the last 8 years.
func Latest(ws []shared.Window, now time.Time) (start, end time.Time, ok bool) {
	for _, w := range ws {
		s, err := Parse(w.From)
		if err != nil {
			continue
		}
		prev := s.Prev(now)
		if prev.IsZero() {
			continue
		}
		e := prev.Add(w.Duration)
		if !ok || prev.After(start) || (prev.Equal(start) && e.After(end)) {
			start, end, ok = prev, e, true
		}
	}
	return start, end, ok
}
