package bench

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"backuprepo/shared/pacing"
)

// The reference servers of the downloads benchmark run in processes of their own, so that
// their CPU time is measured the way the data node's and the control plane's are, and so that
// none of them shares a Go runtime with the client: the test binary runs one of them instead
// of its tests when one of these variables is set (see TestMain).
const (
	relayUpstreamEnv = "BENCH_RELAY_UPSTREAM"    // host:port: Relay to it
	serveFileEnv     = "BENCH_SERVEFILE"         // a path: http.ServeFile of it at every URL
	checkedServeEnv  = "BENCH_SERVEFILE_CHECKED" // a path: the same, checking the file beside it
)

func TestMain(m *testing.M) {
	if upstream := os.Getenv(relayUpstreamEnv); upstream != "" {
		os.Exit(runReference("relay", func(ln net.Listener) error { return Relay(ln, upstream) }))
	}
	if path := os.Getenv(serveFileEnv); path != "" {
		os.Exit(runReference("servefile", func(ln net.Listener) error {
			return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.ServeFile(w, r, path)
			}))
		}))
	}
	if path := os.Getenv(checkedServeEnv); path != "" {
		os.Exit(runReference("checked servefile", func(ln net.Listener) error {
			return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				serveFileChecked(w, r, path)
			}))
		}))
	}
	os.Exit(m.Run())
}

// serveFileChecked is the least a download that checks every byte of the file can cost, and
// so the physical limit disk.Store.Send is measured against: http.ServeFile sends the file
// while another goroutine reads it whole and computes the CRC-32C of its blocks, as Send's
// check does. The two run side by side with nothing ordering them, where Send must check a
// segment before it sends it; the answer ends when both are done. A check that cannot read
// the file aborts the answer, so the client sees a failed download.
func serveFileChecked(w http.ResponseWriter, r *http.Request, path string) {
	checked := make(chan error, 1)
	go func() {
		_, _, err := checkCPUPerGiB(path)
		checked <- err
	}()
	http.ServeFile(w, r, path)
	if err := <-checked; err != nil {
		fmt.Fprintln(os.Stderr, "checked servefile:", err)
		panic(http.ErrAbortHandler)
	}
}

// runReference listens on 127.0.0.1, prints the address on the first line of stdout and
// serves until killed. It listens like the control plane and the data node (pacing.Listen):
// the references differ from them in their code, not in how their sockets are set.
func runReference(name string, serve func(net.Listener) error) int {
	ln, err := pacing.Listen("127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	fmt.Println(ln.Addr())
	if err := serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		return 1
	}
	return 0
}

// startCheckedServeFile serves the file at path with serveFileChecked in a process of its own
// and returns its address and pid.
func startCheckedServeFile(t *testing.T, path string) (string, int) {
	return startReference(t, "checked ServeFile", checkedServeEnv+"="+path)
}

// startRelay runs a Relay to upstream (host:port) in a process of its own and returns its
// address and pid.
func startRelay(t *testing.T, upstream string) (string, int) {
	return startReference(t, "relay", relayUpstreamEnv+"="+upstream)
}

// startServeFile serves the file at path with a bare http.ServeFile in a process of its own
// and returns its address and pid.
func startServeFile(t *testing.T, path string) (string, int) {
	return startReference(t, "ServeFile", serveFileEnv+"="+path)
}

// startReference runs this test binary with env, which makes it a reference server, and
// returns the address it listens on and its pid; the process is killed when t ends.
func startReference(t *testing.T, name, env string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the reference %s: %v", name, err)
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
			t.Fatalf("the reference %s exited without listening", name)
		}
		return addr, cmd.Process.Pid
	case <-time.After(10 * time.Second):
		t.Fatalf("the reference %s did not start within 10 s", name)
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

// TestServeFileReference runs the two reference ServeFile processes, bare and checked: each
// answers the file whole, at any path, and honours a Range request like http.ServeFile does.
func TestServeFileReference(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	body := strings.Repeat("0123456789abcdef", 64<<10)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	bare, _ := startServeFile(t, path)
	checked, _ := startCheckedServeFile(t, path)
	for _, tc := range []struct{ addr, rng, want string }{
		{bare, "", body}, {bare, "bytes=16-31", body[16:32]},
		{checked, "", body}, {checked, "bytes=16-31", body[16:32]},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+tc.addr+"/any/path", nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != tc.want {
			t.Fatalf("%s, range %q: status %d, %d bytes (want %d), err %v",
				tc.addr, tc.rng, resp.StatusCode, len(got), len(tc.want), err)
		}
	}
}

// checkCPUPerGiB is the reference for what the data node does on top of sendfile when it
// sends a version (disk.Store.Send), and the check serveFileChecked runs: read every byte
// through the page cache with pread, 256 KiB at a time, and compute the CRC-32C of each 1 MiB
// block. It runs on one locked thread of the calling process and returns that thread's CPU
// time per GiB of the file at path, and the blocks' checksums.
func checkCPUPerGiB(path string) (float64, []uint32, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	table := crc32.MakeTable(crc32.Castagnoli)
	buf := make([]byte, 256<<10)
	threadCPU := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := threadCPU()
	var sums []uint32
	var size int64
	for {
		n, err := f.ReadAt(buf, size)
		if n > 0 {
			if size%mib == 0 { // a new block
				sums = append(sums, 0)
			}
			sums[len(sums)-1] = crc32.Update(sums[len(sums)-1], table, buf[:n])
		}
		size += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, nil, err
		}
	}
	if size == 0 {
		return 0, nil, fmt.Errorf("%s is empty", path)
	}
	return (threadCPU() - before).Seconds() / (float64(size) / gib), sums, nil
}
