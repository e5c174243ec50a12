// Package pacing keeps TCP from pacing the packets of loopback connections, where pacing has
// nothing to protect and only costs the sender CPU.
//
// A congestion control like BBR (the system default on some hosts, this project's CI machines
// among them) paces: without the fq qdisc, TCP holds back what it may not send yet and sends it
// from a high-resolution timer. Pacing spreads a burst so that it does not overflow the queue of
// a slow link on the way; a loopback connection has no such link, and in a virtual machine the
// timer interrupts and the interrupt masking around them are dear. Measured on one of those
// machines, a bare http.ServeFile sending 2 GiB over loopback spent 0.27-0.37 CPU-s/GiB with
// bbr, at half the speed, and 0.08 with reno (docs/BENCHMARKS.md, session 6).
//
// Loopback is where a reverse proxy on the same machine (nginx, as the deployment guide has
// it) meets the control plane, and where the control plane meets a data node on its own
// machine. Connections to other hosts keep the system's choice: there pacing earns its cost.
package pacing

import (
	"net"
	"net/netip"
	"syscall"
)

// Loopback connections use reno: available to every process whatever
// net.ipv4.tcp_allowed_congestion_control says, and where packets are seldom lost, as on
// loopback, it grows its window as fast as any other algorithm.
const loopbackAlgorithm = "reno"

// Listen announces on the TCP address addr like net.Listen; connections it accepts from a
// loopback address do not pace. Accept still returns the *net.TCPConn, so sendfile and splice
// keep working on it.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return listener{ln}, nil
}

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tcp, ok := c.(*net.TCPConn); ok && err == nil && isLoopback(tcp.RemoteAddr().String()) {
		// Best effort: when it fails the connection keeps the system's algorithm, which works,
		// only at a higher cost.
		if raw, err := tcp.SyscallConn(); err == nil {
			_ = off(raw)
		}
	}
	return c, err
}

// Control is a net.Dialer Control function: a connection it dials to a loopback address does
// not pace. It never fails a dial.
func Control(network, address string, c syscall.RawConn) error {
	if isLoopback(address) {
		_ = off(c)
	}
	return nil
}

func isLoopback(hostPort string) bool {
	ap, err := netip.ParseAddrPort(hostPort)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
