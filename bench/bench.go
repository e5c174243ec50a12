// Package bench measures Backup Repository against the physical limits of the machine it runs
// on and against the targets of the performance work; TestSuite drives it (scripts/bench.sh).
package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Result is one measured figure and the target it is held to.
type Result struct {
	Name   string
	Value  float64
	Op     string // ">=" or "<="
	Target float64
	Unit   string
}

// Pass reports whether the value meets the target; NaN (nothing measured) never passes.
func (r Result) Pass() bool {
	if math.IsNaN(r.Value) {
		return false
	}
	switch r.Op {
	case ">=":
		return r.Value >= r.Target
	case "<=":
		return r.Value <= r.Target
	}
	return false
}

// Line is the result in the suite's one-line format, which scripts/bench.sh parses:
// "bench: <name> value=<number> target=<op><number> unit=<unit> pass=<true|false>".
func (r Result) Line() string {
	return fmt.Sprintf("bench: %s value=%s target=%s%s unit=%s pass=%t",
		r.Name, formatNumber(r.Value), r.Op, formatNumber(r.Target), r.Unit, r.Pass())
}

// formatNumber keeps three decimals, enough for ratios and milliseconds, and drops trailing
// zeros so that targets read as written (0.9, 500).
func formatNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "NaN"
	}
	s := strconv.FormatFloat(v, 'f', 3, 64)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// Median of xs (the mean of the middle two for an even count); NaN when xs is empty.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of xs: the smallest value
// with at least p% of the values at or below it. NaN when xs is empty.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}
