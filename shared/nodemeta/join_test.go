package nodemeta

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptedMember fails its first joins, then succeeds; it counts members as told.
type scriptedMember struct {
	mu      sync.Mutex
	fails   int // joins left to fail
	members int
	joins   []time.Time
}

func (m *scriptedMember) Join(addrs []string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joins = append(m.joins, time.Now())
	if m.fails > 0 {
		m.fails--
		return 0, errors.New("connection refused")
	}
	m.members = 2
	return len(addrs), nil
}

func (m *scriptedMember) NumMembers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.members
}

func (m *scriptedMember) joinTimes() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.joins...)
}

// KeepJoined retries a failing join after 0.5 s, then 1 s; once joined it leaves a member
// with company alone, and joins again within aloneCheckEvery once the member is alone.
func TestKeepJoinedRetriesThenRejoinsWhenAlone(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	m := &scriptedMember{fails: 2}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		KeepJoined(ctx, m, []string{"10.0.0.1:7946"}, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	defer func() { cancel(); <-done }()

	waitJoins := func(n int, within time.Duration) []time.Time {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if j := m.joinTimes(); len(j) >= n {
				return j
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%d joins after %s, want %d", len(m.joinTimes()), within, n)
		return nil
	}
	j := waitJoins(3, 5*time.Second)
	if d := j[1].Sub(j[0]); d < 400*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("second join %s after the first, want about %s", d, firstRetry)
	}
	if d := j[2].Sub(j[1]); d < 900*time.Millisecond || d > 2500*time.Millisecond {
		t.Errorf("third join %s after the second, want about %s", d, 2*firstRetry)
	}

	// Joined with company: no join at the next check.
	time.Sleep(aloneCheckEvery + 300*time.Millisecond - time.Since(j[2]))
	if n := len(m.joinTimes()); n != 3 {
		t.Fatalf("%d joins while the member had company, want 3", n)
	}
	// Alone: the next check joins again.
	m.mu.Lock()
	m.members = 1
	m.mu.Unlock()
	j = waitJoins(4, aloneCheckEvery+3*time.Second)
	if d := j[3].Sub(j[2]); d > 2*aloneCheckEvery+2*time.Second {
		t.Errorf("rejoined %s after joining, want within two checks", d)
	}

	out := logs.String()
	for _, want := range []string{"cannot reach gossip members yet", "joined gossip cluster"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
