package upload

import (
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"backuprepo/e2e/stack"
)

// TestLoopbackConnectionsDoNotPace checks that both binaries wire in shared/pacing. After an
// upload through the front door (client → control plane → data node → the control plane's
// internal API, and back), every connection the control plane or the data node holds to or
// from an HTTP port of the stack uses reno, while the test's own client connection, which
// does not go through the package, keeps the system's algorithm. It reads the sockets with
// ss(8) from iproute2, which scripts/test.sh installs.
func TestLoopbackConnectionsDoNotPace(t *testing.T) {
	t.Parallel()
	def, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Skipf("no per-socket congestion control here: %v", err)
	}
	system := strings.TrimSpace(string(def))
	if system == "reno" {
		t.Skip("the system's algorithm is reno already: nothing tells the two cases apart")
	}

	s := stack.Start(t, stack.Options{Binaries: bins})
	tenant := s.CreateTenant(t, nil)
	_, tok := s.Uploader(t, tenant, "backupUploader")
	c := newColl(t, s, limits(tenant, 5, 4*mib, 20*mib))
	data := payload(t, 64*kib)
	accepted(t, client{t, s, tok.Token}.upload(s.URL, c.ID, data, stack.UploadOptions{}), data)

	httpPorts := map[string]bool{port(t, s.URL): true}
	ours := map[string]string{strconv.Itoa(s.ControlPlane.PID()): "control plane"}
	for _, n := range s.Nodes {
		httpPorts[port(t, n.URL)] = true
		ours[strconv.Itoa(n.PID())] = "data node " + n.Name
	}
	out, err := exec.Command("ss", "-tinpH", "state", "established").Output()
	if err != nil {
		t.Fatalf("ss (from iproute2, which scripts/test.sh installs): %v", err)
	}
	seen := map[string]int{} // "control plane accepted", "data node … dialed", "client"
	for _, sock := range parseSS(string(out)) {
		if !httpPorts[sock.localPort] && !httpPorts[sock.peerPort] {
			continue // PostgreSQL, Redis, gossip, and everything else on the machine
		}
		side := "dialed"
		if httpPorts[sock.localPort] {
			side = "accepted"
		}
		who, ok := ours[sock.pid]
		want := "reno"
		switch {
		case ok:
			who += " " + side
		case sock.pid == strconv.Itoa(os.Getpid()) && side == "dialed" && sock.peerPort == port(t, s.URL):
			who, want = "client", system
		default:
			continue
		}
		seen[who]++
		if sock.algorithm != want {
			t.Errorf("%s connection %s → %s uses %q, want %q", who, sock.local, sock.peer, sock.algorithm, want)
		}
	}
	t.Logf("connections checked: %v", seen)
	// Keep-alive leaves each of these connections open after the upload.
	for _, who := range []string{"client", "control plane accepted", "control plane dialed"} {
		if seen[who] == 0 {
			t.Errorf("no %s connection found among the sockets (found %v)", who, seen)
		}
	}
	for _, n := range s.Nodes {
		if n.Name != c.Node.Name {
			continue
		}
		for _, side := range []string{"accepted", "dialed"} {
			if who := "data node " + n.Name + " " + side; seen[who] == 0 {
				t.Errorf("no %s connection found among the sockets (found %v)", who, seen)
			}
		}
	}
}

type socket struct {
	local, peer, localPort, peerPort, pid, algorithm string
}

var (
	ssPID       = regexp.MustCompile(`pid=(\d+)`)
	ssAlgorithm = regexp.MustCompile(`(?:^|\s)(reno|cubic|bbr\d*|dctcp|vegas|westwood|htcp|bic|illinois|yeah|hybla|scalable|highspeed|lp|veno|nv|cdg)(?:\s|$)`)
)

// parseSS reads `ss -tinpH state established`: per socket, a line "recv-q send-q local peer
// users:(…)" and then an indented line of TCP details that names the congestion control.
func parseSS(out string) []socket {
	var socks []socket
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(socks) > 0 {
				if m := ssAlgorithm.FindStringSubmatch(line); m != nil {
					socks[len(socks)-1].algorithm = m[1]
				}
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		sk := socket{local: f[2], peer: f[3], localPort: lastPort(f[2]), peerPort: lastPort(f[3])}
		if m := ssPID.FindStringSubmatch(line); m != nil {
			sk.pid = m[1]
		}
		socks = append(socks, sk)
	}
	return socks
}

func lastPort(hostPort string) string { return hostPort[strings.LastIndexByte(hostPort, ':')+1:] }

func port(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}
