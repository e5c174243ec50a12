package nodemeta

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"time"
)

// Timing holds the memberlist protocol settings. Every member of one cluster should run with
// the same values: failure detection is a joint effort (any member may probe the dead one) and
// gossip fan-out is done by every member.
type Timing struct {
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	GossipInterval          time.Duration
	GossipNodes             int
	RetransmitMult          int
	PushPullInterval        time.Duration
	TCPTimeout              time.Duration
	DeadNodeReclaimTime     time.Duration
}

// DefaultTiming is tuned for a LAN cluster of a few dozen members, for two targets: a killed
// member is marked dead within ~5 s, and a metadata change reaches every member within 1 s.
//
// Death: the dead member is probed by someone about once per ProbeInterval (every member probes
// one peer per interval, round robin), the probe fails after ProbeTimeout plus the indirect
// checks in the rest of that interval, then the member stays suspect for
// SuspicionMult × max(1, log10(N)) × ProbeInterval = 1.5 s at N ≤ 10 (about 1.6 s at 11), or up
// to SuspicionMaxTimeoutMult times that (3 s) when too few peers confirm the suspicion; the dead
// message then reaches the control plane in a gossip round or two. Worst case about
// 0.5 + 0.5 + 3 + 0.3 ≈ 4.3 s; typically 2 to 3 s. memberlist's LAN default (1 s probes,
// suspicion ×4, max ×6) needs up to 24 s.
//
// Propagation: UpdateNode queues an alive message that every member who holds it forwards to
// GossipNodes random peers each GossipInterval, RetransmitMult × ceil(log10(N+1)) times. With
// 4 peers every 100 ms the change reaches all of 11 members in about log(N) ≈ 3 rounds, so well
// under a second; the LAN default's 3 peers every 200 ms is close to the limit at the tail.
// Push/pull every 10 s (default 30 s) repairs anything gossip missed, for little traffic at
// this cluster size.
//
// Joins and push/pull use TCP with a 3 s timeout (default 10 s) so that an unreachable join
// address does not hold up a retry loop or a shutdown for long.
//
// A member that died may come back under the same name from another address (a Kubernetes pod
// gets a new IP) after DeadNodeReclaimTime (10 s) instead of waiting for the dead entry to be
// forgotten (30 s).
//
// A 250 ms probe timeout is generous for a LAN round trip; memberlist's awareness multiplier
// stretches it on a member that is itself slow, and a falsely suspected member refutes the
// suspicion well within the 1.5 s window.
func DefaultTiming() Timing {
	return Timing{
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            250 * time.Millisecond,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 2,
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             4,
		RetransmitMult:          4,
		PushPullInterval:        10 * time.Second,
		TCPTimeout:              3 * time.Second,
		DeadNodeReclaimTime:     10 * time.Second,
	}
}

// Joiner is what KeepJoined needs of a member: *memberlist.Memberlist has both methods.
type Joiner interface {
	Join(addrs []string) (int, error)
	NumMembers() int
}

// KeepJoined contacts the join list until one member answers, then keeps at it: memberlist
// stops contacting a member about 30 s after declaring it dead, so a partition longer than
// that would never heal, nor would a restarted control plane be found again by nodes that
// still see each other. Once joined, the list is joined again whenever this member is alone,
// and every refreshEvery in any case (a push/pull with each address, cheap at that rate).
// Members() is not read for this: memberlist mutates the nodes it returns (a data race).
// Control plane and data nodes both run it, so a cluster heals the same way from either side.
// It returns when ctx ends.
func KeepJoined(ctx context.Context, m Joiner, addrs []string, logger *slog.Logger) {
	wait := firstRetry
	var joinedAt time.Time
	for attempt := 1; ; attempt++ {
		if joinedAt.IsZero() || m.NumMembers() <= 1 || time.Since(joinedAt) >= refreshEvery {
			n, err := m.Join(addrs)
			switch {
			case n > 0 && joinedAt.IsZero():
				logger.Info("joined gossip cluster", "contacted", n, "attempts", attempt)
			case n > 0:
				logger.Debug("refreshed gossip membership", "contacted", n)
			case attempt == 1 || attempt%10 == 0:
				logger.Warn("cannot reach gossip members yet, retrying", "join", addrs, "attempts", attempt, "err", err)
			}
			if n > 0 {
				joinedAt = time.Now()
			}
		}
		if !joinedAt.IsZero() {
			wait = aloneCheckEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, aloneCheckEvery)
	}
}

const (
	// firstRetry is the wait after the first failed join; it doubles up to aloneCheckEvery.
	firstRetry = 500 * time.Millisecond
	// aloneCheckEvery is how often a joined member checks whether it is alone.
	aloneCheckEvery = 5 * time.Second
	// refreshEvery is how often a joined member joins its list again regardless.
	refreshEvery = 30 * time.Second
)

// NewLogWriter returns an io.Writer for memberlist's *log.Logger (created with no prefix and
// no flags) that turns each "[LEVEL] memberlist: message" line into one slog record at the
// matching level.
func NewLogWriter(l *slog.Logger) io.Writer { return logWriter{l: l} }

type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		level, msg := parseLogLine(line)
		w.l.Log(context.Background(), level, msg, "component", "memberlist")
	}
	return len(p), nil
}

func levelOf(name string) (slog.Level, bool) {
	switch name {
	case "TRACE":
		return slog.LevelDebug - 4, true
	case "DEBUG":
		return slog.LevelDebug, true
	case "INFO":
		return slog.LevelInfo, true
	case "WARN":
		return slog.LevelWarn, true
	case "ERR", "ERROR":
		return slog.LevelError, true
	}
	return 0, false
}

func parseLogLine(line []byte) (slog.Level, string) {
	level := slog.LevelInfo
	if line[0] == '[' {
		if end := bytes.IndexByte(line, ']'); end > 0 {
			if l, ok := levelOf(string(line[1:end])); ok {
				level = l
				line = bytes.TrimSpace(line[end+1:])
			}
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	return level, string(line)
}
