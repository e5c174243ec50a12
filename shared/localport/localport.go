// Package localport picks ports on a local address for servers that must be told their port
// before they start: the control planes, data nodes and gossip members that tests run as
// processes.
package localport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// The range ports are drawn from ends where the kernel's ephemeral range starts.
//
// A port the kernel hands out for Listen("127.0.0.1:0") comes from its ephemeral range, the
// same range every outgoing connection on the machine takes its local port from. Such a port,
// closed again so that a child process can bind it, may meanwhile become the local end of any
// connection (tests running beside ours open thousands), and the child then fails with
// "address already in use". A port below that range is never taken that way; only another
// process choosing it too could, and drawing at random from 20,000 makes that rare.
const (
	span            = 20000
	defaultEphemera = 32768 // Linux's default net.ipv4.ip_local_port_range starts here
	lowest          = 1024
)

// Free returns a port free on 127.0.0.1 for both TCP and UDP (memberlist binds both on its
// port) at the time of the call, chosen at random below the ephemeral range, or an error
// after 200 draws found none.
func Free() (int, error) { return FreeOn("127.0.0.1") }

// FreeOn is Free for another local address (a Docker network's gateway, say).
func FreeOn(host string) (int, error) {
	hi := ephemeralStart()
	lo := max(lowest, hi-span)
	if hi-lo < 100 {
		return 0, errors.New("no room below the ephemeral port range")
	}
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		if free(host, port) {
			return port, nil
		}
	}
	return 0, errors.New("no free port found in 200 tries")
}

func free(host string, port int) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// ephemeralStart reads where the kernel's ephemeral range starts.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemera
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return defaultEphemera
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= lowest {
		return defaultEphemera
	}
	return n
}
