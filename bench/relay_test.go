package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// relayUpstreamEnv makes the test binary run Relay instead of its tests (see TestMain): the
// reference relay needs a process of its own, so that its CPU time is measured the way the
// control plane's is.
const relayUpstreamEnv = "BENCH_RELAY_UPSTREAM"

func TestMain(m *testing.M) {
	if upstream := os.Getenv(relayUpstreamEnv); upstream != "" {
		os.Exit(runRelay(upstream))
	}
	os.Exit(m.Run())
}

// runRelay listens on 127.0.0.1, prints the address on the first line of stdout and relays
// until killed.
func runRelay(upstream string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	fmt.Println(ln.Addr())
	if err := Relay(ln, upstream); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	return 0
}

// startRelay runs a Relay to upstream (host:port) in a process of its own and returns its
// address and pid.
func startRelay(t *testing.T, upstream string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), relayUpstreamEnv+"="+upstream)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the reference relay: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case addr := <-lines:
		if addr == "" {
			t.Fatal("the reference relay exited without listening")
		}
		return addr, cmd.Process.Pid
	case <-time.After(10 * time.Second):
		t.Fatal("the reference relay did not start within 10 s")
	}
	return "", 0
}

// TestRelayForwardsBothWays runs the reference relay in front of an HTTP server: a request and
// a 4 MiB answer go through it unchanged, twice on one connection.
func TestRelayForwardsBothWays(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 256<<10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "through" {
			http.Error(w, "header lost", http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr, _ := startRelay(t, ln.Addr().String())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for range 2 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Header.Set("X-Probe", "through")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(got) != body {
			t.Fatalf("through the relay: status %d, %d bytes (want %d), err %v", resp.StatusCode, len(got), len(body), err)
		}
	}
}
