// Package progress shows how far a transfer has come: a bar redrawn in place on a terminal
// (bytes, rate and, when the size is known, ETA), plain log lines every few seconds otherwise.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// IsTerminal reports whether f is an interactive terminal.
func IsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// Options configure a Meter.
type Options struct {
	// Terminal redraws one line in place; otherwise a line is logged every Interval.
	Terminal bool
	// Interval between updates; 0 means 200ms on a terminal and 5s otherwise.
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Meter counts bytes of one transfer and reports them to out until Finish.
type Meter struct {
	out   io.Writer
	label string
	opts  Options
	start time.Time
	done  atomic.Int64
	total atomic.Int64 // <0: unknown
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

// Start begins reporting a transfer of total bytes (negative when unknown).
func Start(out io.Writer, label string, total int64, opts Options) *Meter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
		if opts.Terminal {
			opts.Interval = 200 * time.Millisecond
		}
	}
	m := &Meter{out: out, label: label, opts: opts, start: opts.Now(), stop: make(chan struct{})}
	m.total.Store(total)
	m.wg.Add(1)
	go m.loop()
	return m
}

// Add counts n more bytes; safe from any goroutine.
func (m *Meter) Add(n int64) { m.done.Add(n) }

// Set sets the byte count, for a transfer that resumes at an offset.
func (m *Meter) Set(n int64) { m.done.Store(n) }

// SetTotal sets the size once it is known (from a Content-Length, say).
func (m *Meter) SetTotal(n int64) { m.total.Store(n) }

// Reader counts what is read through r.
func (m *Meter) Reader(r io.Reader) io.Reader { return &countingReader{r: r, m: m} }

// Finish stops the updates and writes a final line saying how it ended (ok or not).
func (m *Meter) Finish(ok bool) {
	m.once.Do(func() {
		close(m.stop)
		m.wg.Wait()
		line := Line(m.label, m.done.Load(), m.total.Load(), m.opts.Now().Sub(m.start), m.opts.Terminal)
		status := "done"
		if !ok {
			status = "failed"
		}
		if m.opts.Terminal {
			fmt.Fprintf(m.out, "\r\033[K%s %s\n", line, status)
		} else {
			fmt.Fprintf(m.out, "%s %s\n", line, status)
		}
	})
}

func (m *Meter) loop() {
	defer m.wg.Done()
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			line := Line(m.label, m.done.Load(), m.total.Load(), m.opts.Now().Sub(m.start), m.opts.Terminal)
			if m.opts.Terminal {
				fmt.Fprintf(m.out, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(m.out, line)
			}
		}
	}
}

type countingReader struct {
	r io.Reader
	m *Meter
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.m.Add(int64(n))
	return n, err
}

const barWidth = 24

// Line renders one progress report: the label, a bar (terminal only, when the total is
// known), bytes done of total, the mean rate and the ETA.
func Line(label string, done, total int64, elapsed time.Duration, bar bool) string {
	var b strings.Builder
	b.WriteString(label)
	if total >= 0 {
		frac := 1.0
		if total > 0 {
			frac = min(float64(done)/float64(total), 1)
		}
		if bar {
			full := int(frac * barWidth)
			fmt.Fprintf(&b, " [%s%s]", strings.Repeat("#", full), strings.Repeat(".", barWidth-full))
		}
		fmt.Fprintf(&b, " %3.0f%% %s / %s", frac*100, Bytes(done), Bytes(total))
	} else {
		fmt.Fprintf(&b, " %s", Bytes(done))
	}
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed.Seconds()
	}
	fmt.Fprintf(&b, " %s/s", Bytes(int64(rate)))
	if total >= 0 && done < total {
		if rate > 0 {
			fmt.Fprintf(&b, " ETA %s", Duration(time.Duration(float64(total-done)/rate*float64(time.Second))))
		} else {
			b.WriteString(" ETA --")
		}
	}
	return b.String()
}

// Bytes formats n with a binary unit: 512 B, 1.5 KiB, 20.0 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Duration formats d for an ETA: 45s, 3m05s, 2h10m.
func Duration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
