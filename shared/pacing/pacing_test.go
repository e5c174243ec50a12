package pacing

import (
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// algorithm reads the congestion control of c's socket.
func algorithm(t *testing.T, c net.Conn) string {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	size := uint32(len(buf))
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_CONGESTION,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil {
		t.Fatal(err)
	}
	if errno != 0 {
		t.Fatalf("getsockopt TCP_CONGESTION: %v", errno)
	}
	return strings.TrimRight(string(buf[:size]), "\x00")
}

func systemDefault(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLoopbackDoesNotPace(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the congestion control is chosen per socket on Linux only")
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got, want := algorithm(t, plain), systemDefault(t); got != want {
		t.Errorf("a connection dialed without Control uses %q, want the system's %q", got, want)
	}
	server := <-accepted
	defer server.Close()
	if _, ok := server.(*net.TCPConn); !ok {
		t.Errorf("Accept returned a %T: sendfile and splice need the *net.TCPConn itself", server)
	}
	if got := algorithm(t, server); got != loopbackAlgorithm {
		t.Errorf("an accepted loopback connection uses %q, want %q", got, loopbackAlgorithm)
	}

	dialed, err := (&net.Dialer{Control: Control}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	(<-accepted).Close()
	if got := algorithm(t, dialed); got != loopbackAlgorithm {
		t.Errorf("a loopback connection dialed with Control uses %q, want %q", got, loopbackAlgorithm)
	}
}

// TestOtherHostsKeepTheSystemChoice needs an address of this machine that is not loopback
// (any interface's, docker0's will do): connections to it must keep the system's algorithm.
func TestOtherHostsKeepTheSystemChoice(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the congestion control is chosen per socket on Linux only")
	}
	want := systemDefault(t)
	if want == loopbackAlgorithm {
		t.Skipf("the system default is %s already: nothing tells the two cases apart", want)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var host string
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil && !ip.IP.IsLoopback() {
			host = ip.IP.String()
			break
		}
	}
	if host == "" {
		t.Skip("this machine has no IPv4 address but loopback")
	}
	ln, err := Listen(net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	dialed, err := (&net.Dialer{Control: Control}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	server := <-accepted
	defer server.Close()
	if got := algorithm(t, dialed); got != want {
		t.Errorf("a connection dialed to %s uses %q, want the system's %q", host, got, want)
	}
	if got := algorithm(t, server); got != want {
		t.Errorf("a connection accepted from %s uses %q, want the system's %q", host, got, want)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:80":         true,
		"127.3.4.5:80":         true,
		"[::1]:80":             true,
		"[::ffff:127.0.0.1]:1": true,
		"10.0.0.1:80":          false,
		"[2001:db8::1]:80":     false,
		"localhost:80":         false, // Control sees resolved addresses; a name is not one
		"garbage":              false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
