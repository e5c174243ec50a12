package localserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The ports come from below the ephemeral range, and each is free for TCP and UDP: binding
// both works right after.
func TestFreeIsBelowTheEphemeralRangeAndBindable(t *testing.T) {
	t.Parallel()
	hi := ephemeralStart()
	seen := map[int]bool{}
	for range 50 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowest || port >= hi {
			t.Fatalf("port %d outside [%d, %d)", port, lowest, hi)
		}
		seen[port] = true
		addr := "127.0.0.1:" + strconv.Itoa(port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("tcp %s: %v", addr, err)
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			t.Fatalf("udp %s: %v", addr, err)
		}
		u.Close()
	}
	if len(seen) < 40 {
		t.Fatalf("50 draws gave only %d different ports", len(seen))
	}
}

// A port in use, by TCP or by UDP alone, is never returned.
func TestFreeSkipsPortsInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, p := range []int{l.Addr().(*net.TCPAddr).Port, u.LocalAddr().(*net.UDPAddr).Port} {
		if free("127.0.0.1", p) {
			t.Errorf("port %d is in use but free says it is free", p)
		}
	}
}

// WaitOK returns once the server answers 200, says what it last got when the wait runs out,
// and stops at once when the process has exited.
func TestWaitOK(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/never" || calls.Add(1) <= 2 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	if err := WaitOK(context.Background(), srv.URL+"/livez", nil); err != nil || calls.Load() != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, calls.Load())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := WaitOK(ctx, srv.URL+"/never", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err %v, want the deadline and the last 503", err)
	}

	exited := make(chan struct{})
	close(exited)
	start := time.Now()
	if err := WaitOK(context.Background(), srv.URL+"/never", exited); !errors.Is(err, ErrExited) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %s, want ErrExited at once", err, time.Since(start))
	}
}
