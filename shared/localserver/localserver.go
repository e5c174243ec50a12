// Package localserver is what tests need to run servers as processes on this machine (control
// planes, data nodes, gossip members, PostgreSQL): a port to give a server before it starts,
// and a wait until it serves.
package localserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
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

// FreePort returns a port free on 127.0.0.1 for both TCP and UDP (memberlist binds both on
// its port) at the time of the call, chosen at random below the ephemeral range, or an error
// after 200 draws found none.
func FreePort() (int, error) { return FreePortOn("127.0.0.1") }

// FreePortOn is FreePort for another local address (a Docker network's gateway, say).
func FreePortOn(host string) (int, error) {
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

// ErrExited is WaitOK's error when the server's process ended before it answered.
var ErrExited = errors.New("the server exited before it answered")

// WaitOK polls url every 50 ms until it answers 200, exited is closed (ErrExited; a nil
// channel never is) or ctx ends. The error of an unanswered wait says what the last try got.
func WaitOK(ctx context.Context, url string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	last := "nothing yet"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %q", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer 200: %w (last: %s)", url, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
