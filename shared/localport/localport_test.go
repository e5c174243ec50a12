package localport

import (
	"net"
	"strconv"
	"testing"
)

// The ports come from below the ephemeral range, and each is free for TCP and UDP: binding
// both works right after.
func TestFreeIsBelowTheEphemeralRangeAndBindable(t *testing.T) {
	t.Parallel()
	hi := ephemeralStart()
	seen := map[int]bool{}
	for range 50 {
		port, err := Free()
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
