package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"backuprepo/e2e/stack"
)

// The benchmarks of issue 7, in the order the report lists them. Some table rows carry two
// targets; each target gets its own line.
var allNames = []string{
	"upload_direct_vs_disk",
	"upload_frontdoor_vs_direct",
	"download_direct_vs_checked_servefile",
	"download_frontdoor_vs_direct",
	"download_frontdoor_cpu_per_gib",
	"upload_memory_per_transfer",
	"small_uploads_per_s",
	"small_uploads_p99",
	"db_round_trips_per_upload",
	"graphql_collections_p99_at_600",
	"graphql_collections_errors_at_600",
	"gossip_capacity_propagation_p99",
	"node_death_detection",
	"datanode_start_with_100k_versions",
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// sizes are the knobs that differ between the measured (full) run and the quick run of
// `make test`, whose only job is to keep the suite working.
type sizes struct {
	quick          bool
	big            int64 // one large upload or download
	rounds         int   // A/B rounds of the ratio benchmarks
	memUploads     int
	memSize        int64
	smallClients   int
	smallWindow    time.Duration
	dbUploads      int
	gqlCollections int
	gqlRate        int
	gqlWarmup      time.Duration
	gqlWindow      time.Duration
	clusterNodes   int
	gossipChanges  int // in total, spread over the nodes
	deathRounds    int
	versions       int
	versionDirs    int
	startRounds    int
}

func sizesFor(quick bool) sizes {
	if quick {
		return sizes{quick: true, big: 256 * mib, rounds: 2, memUploads: 64, memSize: 8 * mib,
			smallClients: 16, smallWindow: 5 * time.Second, dbUploads: 20,
			gqlCollections: 10_000, gqlRate: 600, gqlWarmup: time.Second, gqlWindow: 5 * time.Second,
			clusterNodes: 3, gossipChanges: 6, deathRounds: 1,
			versions: 10_000, versionDirs: 100, startRounds: 2}
	}
	return sizes{big: 2 * gib, rounds: 5, memUploads: 64, memSize: 64 * mib,
		smallClients: 16, smallWindow: 10 * time.Second, dbUploads: 50,
		gqlCollections: 10_000, gqlRate: 600, gqlWarmup: 2 * time.Second, gqlWindow: 20 * time.Second,
		clusterNodes: 10, gossipChanges: 100, deathRounds: 3,
		versions: 100_000, versionDirs: 1_000, startRounds: 3}
}

// reporter prints every result as it comes and checks at the end that each benchmark
// reported exactly once.
type reporter struct {
	mu      sync.Mutex
	results []Result
}

func (r *reporter) add(t testing.TB, res Result) {
	t.Helper()
	r.mu.Lock()
	r.results = append(r.results, res)
	r.mu.Unlock()
	fmt.Fprintln(os.Stdout, res.Line())
	// A miss is not a test failure: scripts/bench.sh fails a full run on any pass=false line,
	// while the test fails only when the suite itself breaks (and then shows the logs).
	if !res.Pass() {
		t.Logf("%s misses its target", res.Name)
	}
}

func (r *reporter) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]int{}
	for _, res := range r.results {
		seen[res.Name]++
	}
	for _, n := range allNames {
		if seen[n] != 1 {
			t.Errorf("benchmark %s reported %d times, want once", n, seen[n])
		}
	}
}

// TestSuite is the benchmark suite. It runs only when BENCH_MODE is "full" or "quick"
// (scripts/bench.sh sets it), so that `go test ./...` over the workspace does not start it.
func TestSuite(t *testing.T) {
	mode := os.Getenv("BENCH_MODE")
	if mode != "full" && mode != "quick" {
		t.Skip("BENCH_MODE is not full or quick; run `make bench` or BENCH_QUICK=1 scripts/bench.sh")
	}
	sz := sizesFor(mode == "quick")
	rep := &reporter{}
	bins, prof := buildBinaries(t, os.Getenv("BENCH_PROFILE_DIR"))
	hashRate, copyRate := SpeedReference()
	t.Logf("machine: %d CPUs; one core hashes sha256 at %.0f MB/s and copies memory at %.0f MB/s; mode %s",
		runtime.NumCPU(), hashRate, copyRate, mode)

	t.Run("single-node", func(t *testing.T) { singleNode(t, sz, bins, prof, rep) })
	t.Run("cluster", func(t *testing.T) { cluster(t, sz, bins, rep) })
	rep.check(t)
}

// env holds what the single-node benchmarks share.
type env struct {
	s      *stack.Stack
	node   *stack.Node
	token  string
	tenant string
	pat    *Pattern
	client *http.Client
	dir    string // the filesystem the data node's disk is on, for the dd reference
	prof   *profiler
	seq    int
}

// collection creates a FIFO collection for uploads of up to one bytes each.
func (e *env) collection(t testing.TB, one int64, count int) string {
	t.Helper()
	e.seq++
	id := fmt.Sprintf("bench-%d-%s", e.seq, strconv.FormatInt(time.Now().UnixNano()%1e9, 36))
	cid, node := e.s.CreateCollection(t, map[string]any{
		"id": id, "tenantId": e.tenant, "description": "bench",
		"maxBackupsCount": count, "maxOneVersionSize": one, "maxCollectionSize": one * int64(count),
		"strategy": "FIFO",
	})
	if node != e.node.Name {
		t.Fatalf("collection placed on %q, want %q", node, e.node.Name)
	}
	return cid
}

func singleNode(t *testing.T, sz sizes, bins stack.Binaries, prof *profiler, rep *reporter) {
	dir := t.TempDir()
	// The deletion sweeper at its production interval (the test stacks run it every second):
	// its housekeeping queries are not part of an upload's round trips.
	opts := stack.Options{Binaries: bins, DataNodes: 1, Nodes: []stack.NodeOptions{{DiskParent: dir}},
		DataNodeEnv: []string{"BR_CLEANUP_INTERVAL=30s"}}
	if prof != nil {
		opts.ControlPlaneEnv = []string{"BENCH_PPROF_ADDR=" + prof.cpAddr}
		opts.DataNodeEnv = append(opts.DataNodeEnv, "BENCH_PPROF_ADDR="+prof.dnAddr)
	}
	s := stack.Start(t, opts)
	e := &env{s: s, node: s.Nodes[0], pat: NewPattern(4*mib, 1), client: newClient(), dir: dir, prof: prof}
	s.HTTP = e.client
	e.tenant = s.CreateTenant(t, map[string]any{"quota": 0})
	_, tok := s.Uploader(t, e.tenant, "backupUploader", "backupDownloader")
	e.token = tok.Token
	t.Logf("data node disk on %s", describeDisk(dir))

	// Memory first: a fresh process shows idle RSS without what earlier transfers left behind.
	measure(t, "upload_memory_per_transfer", func(t *testing.T) { benchMemory(t, e, sz, rep) })
	measure(t, "uploads", func(t *testing.T) { benchUploads(t, e, sz, rep) })
	measure(t, "downloads", func(t *testing.T) { benchDownloads(t, e, sz, rep) })
	measure(t, "small_uploads", func(t *testing.T) { benchSmallUploads(t, e, sz, rep) })
	measure(t, "db_round_trips_per_upload", func(t *testing.T) { benchDBRoundTrips(t, e, sz, rep) })
	measure(t, "graphql_collections_p99_at_600", func(t *testing.T) { benchGraphQL(t, e, sz, rep) })
	// Last: it restarts the data node.
	measure(t, "datanode_start_with_100k_versions", func(t *testing.T) { benchStart(t, e, sz, rep) })
}

// measure runs one benchmark as a subtest and logs how much of the machine's CPU time the
// hypervisor stole meanwhile: a miss while it stole much says more about the machine than
// about the code.
func measure(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		before, err := ReadMachineCPU()
		defer func() {
			if after, aerr := ReadMachineCPU(); err == nil && aerr == nil {
				t.Logf("the hypervisor stole %.1f%% of the machine's CPU time during %s", before.StolenPercent(after), name)
			}
		}()
		f(t)
	})
}

// newClient is an HTTP client for transfers: large socket buffers and many connections, so
// that the client is never what limits a measurement.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		WriteBufferSize:     256 * kib,
		ReadBufferSize:      256 * kib,
	}}
}

// upload sends size pattern bytes as a new version of cid to base and returns how long the
// whole request took (until the answer, which comes after fsync and commit).
func (e *env) upload(ctx context.Context, base, cid string, size int64) (time.Duration, stack.Version, error) {
	start := time.Now()
	a, err := e.s.Upload(ctx, base, e.token, cid, e.pat.Reader(size), stack.UploadOptions{ContentLength: size})
	d := time.Since(start)
	if err != nil {
		return d, stack.Version{}, fmt.Errorf("upload to %s: %w", base, err)
	}
	if a.Status != http.StatusOK {
		return d, stack.Version{}, fmt.Errorf("upload to %s: %s", base, a)
	}
	v, err := a.Version()
	if err != nil {
		return d, v, err
	}
	if v.Size != size {
		return d, v, fmt.Errorf("upload to %s stored %d bytes, sent %d", base, v.Size, size)
	}
	return d, v, nil
}

// download reads url to the end with a 256 KiB buffer and returns how long it took.
func download(ctx context.Context, client *http.Client, url, token string, want int64) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("download %s: %d %q", url, resp.StatusCode, b)
	}
	buf := make([]byte, 256*kib)
	var n int64
	for {
		c, err := resp.Body.Read(buf)
		n += int64(c)
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("download %s after %d bytes: %w", url, n, err)
		}
	}
	d := time.Since(start)
	if n != want {
		return d, fmt.Errorf("download %s: %d bytes, want %d", url, n, want)
	}
	return d, nil
}

// ddWrite writes size pattern bytes to path with dd and conv=fdatasync: the disk's own speed
// for the same bytes, the reference of upload_direct_vs_disk.
func ddWrite(ctx context.Context, path string, r io.Reader, size int64) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, "dd", "of="+path, "bs=1M", "count="+strconv.FormatInt(size/mib, 10),
		"iflag=fullblock", "conv=fdatasync", "status=none")
	cmd.Stdin = r
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("dd: %w: %s", err, out)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return d, err
	}
	if fi.Size() != size {
		return d, fmt.Errorf("dd wrote %d bytes, want %d", fi.Size(), size)
	}
	return d, nil
}

// rate is a throughput in MiB/s, for logs.
func rate(size int64, d time.Duration) float64 { return float64(size) / mib / d.Seconds() }

func benchUploads(t *testing.T, e *env, sz sizes, rep *reporter) {
	ctx := context.Background()
	// One fresh collection per upload: nothing is rotated out, so each upload pays exactly
	// stream + sha256 + fsync + rename + commit, like dd pays write + fdatasync.
	one := sz.big + mib
	var direct, front []string
	for range sz.rounds {
		direct = append(direct, e.collection(t, one, 1))
		front = append(front, e.collection(t, one, 1))
	}
	var diskRatios, frontRatios []float64
	defer e.prof.during(t, "uploads", time.Duration(sz.rounds)*20*time.Second)()
	for r := range sz.rounds {
		var tdd, tdirect, tfront time.Duration
		steps := []func() error{
			func() (err error) {
				tdd, err = ddWrite(ctx, filepath.Join(e.dir, fmt.Sprintf("dd-%d", r)), e.pat.Reader(sz.big), sz.big)
				return err
			},
			func() (err error) { tdirect, _, err = e.upload(ctx, e.node.URL, direct[r], sz.big); return err },
			func() (err error) { tfront, _, err = e.upload(ctx, e.s.URL, front[r], sz.big); return err },
		}
		if r%2 == 1 { // A/B/C, then C/B/A: neither side always goes first
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		diskRatios = append(diskRatios, tdd.Seconds()/tdirect.Seconds())
		frontRatios = append(frontRatios, tdirect.Seconds()/tfront.Seconds())
		t.Logf("round %d: dd %.0f MiB/s, direct %.0f MiB/s, front door %.0f MiB/s", r+1,
			rate(sz.big, tdd), rate(sz.big, tdirect), rate(sz.big, tfront))
	}
	for r := range sz.rounds {
		_ = os.Remove(filepath.Join(e.dir, fmt.Sprintf("dd-%d", r)))
	}
	t.Logf("direct/dd ratios %.3f, front door/direct ratios %.3f", diskRatios, frontRatios)
	rep.add(t, Result{"upload_direct_vs_disk", Median(diskRatios), ">=", 0.90, "ratio"})
	rep.add(t, Result{"upload_frontdoor_vs_direct", Median(frontRatios), ">=", 0.90, "ratio"})
}

func benchDownloads(t *testing.T, e *env, sz sizes, rep *reporter) {
	ctx := context.Background()
	cid := e.collection(t, sz.big+mib, 1)
	if _, _, err := e.upload(ctx, e.node.URL, cid, sz.big); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.node.Disks[0], "collections", cid)
	entries, err := os.ReadDir(path)
	var names []string // the version's file, not its ".<id>.sums" sidecar
	for _, d := range entries {
		if !strings.HasPrefix(d.Name(), ".") {
			names = append(names, d.Name())
		}
	}
	if err != nil || len(names) != 1 {
		t.Fatalf("the collection's directory %s: %v, version files %v", path, err, names)
	}
	path = filepath.Join(path, names[0])
	serveAddr, servePID := startServeFile(t, path)
	serveURL := "http://" + serveAddr + "/file"
	checkedAddr, checkedPID := startCheckedServeFile(t, path)
	checkedURL := "http://" + checkedAddr + "/file"
	suffix := "/api/stable/repository/collection/" + cid + "/versions/latest"

	// Every source reads the page cache: warm it once.
	if _, err := download(ctx, e.client, serveURL, "", sz.big); err != nil {
		t.Fatal(err)
	}
	nodeURL, err := url.Parse(e.node.URL)
	if err != nil {
		t.Fatal(err)
	}
	relayAddr, relayPID := startRelay(t, nodeURL.Host)
	cpPID := e.s.ControlPlane.PID()
	var checkedRatios, bareRatios, frontRatios []float64
	var cpuPerGiB, relayPerGiB, servePerGiB, nodePerGiB, checkPerGiB []float64
	var firstSums []uint32
	// Cores kept busy by a server and its client (this process), per download.
	var serveCores, directCores []float64
	// cpuPerGiBOf measures pid's CPU time per GiB while a download from "from" runs, and the
	// cores the server and this process kept busy together meanwhile.
	cpuPerGiBOf := func(pid int, from string, cores *[]float64) (time.Duration, float64, error) {
		self := os.Getpid()
		before, err1 := CPUTime(pid)
		clientBefore, err2 := CPUTime(self)
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, err
		}
		took, err := download(ctx, e.client, from, e.token, sz.big)
		if err != nil {
			return 0, 0, err
		}
		after, err1 := CPUTime(pid)
		clientAfter, err2 := CPUTime(self)
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, err
		}
		if cores != nil {
			*cores = append(*cores, ((after-before)+(clientAfter-clientBefore)).Seconds()/took.Seconds())
		}
		return took, (after - before).Seconds() / (float64(sz.big) / gib), nil
	}
	defer e.prof.during(t, "downloads", time.Duration(sz.rounds)*12*time.Second)()
	for r := range sz.rounds {
		var tsf, tchecked, tdirect, tfront, trelay time.Duration
		var cpu, relayCPU, serveCPU, checkedCPU, nodeCPU, checkCPU float64
		steps := []func() error{
			func() error {
				c, sums, err := checkCPUPerGiB(path)
				if err == nil && firstSums != nil && !slices.Equal(sums, firstSums) {
					err = fmt.Errorf("the version's blocks read differently in round %d", r+1)
				}
				checkCPU, firstSums = c, sums
				return err
			},
			func() (err error) { tsf, serveCPU, err = cpuPerGiBOf(servePID, serveURL, &serveCores); return err },
			func() (err error) { tchecked, checkedCPU, err = cpuPerGiBOf(checkedPID, checkedURL, nil); return err },
			func() (err error) {
				tdirect, nodeCPU, err = cpuPerGiBOf(e.node.PID(), e.node.URL+suffix, &directCores)
				return err
			},
			func() (err error) { tfront, cpu, err = cpuPerGiBOf(cpPID, e.s.URL+suffix, nil); return err },
			func() (err error) {
				trelay, relayCPU, err = cpuPerGiBOf(relayPID, "http://"+relayAddr+suffix, nil)
				return err
			},
		}
		if r%2 == 1 {
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		checkedRatios = append(checkedRatios, tchecked.Seconds()/tdirect.Seconds())
		bareRatios = append(bareRatios, tsf.Seconds()/tdirect.Seconds())
		frontRatios = append(frontRatios, tdirect.Seconds()/tfront.Seconds())
		cpuPerGiB, relayPerGiB = append(cpuPerGiB, cpu), append(relayPerGiB, relayCPU)
		servePerGiB, nodePerGiB = append(servePerGiB, serveCPU), append(nodePerGiB, nodeCPU)
		checkPerGiB = append(checkPerGiB, checkCPU)
		t.Logf("round %d: ServeFile %.0f MiB/s (%.3f CPU s/GiB), checked ServeFile %.0f MiB/s (%.3f CPU s/GiB), "+
			"direct %.0f MiB/s (%.3f CPU s/GiB), front door %.0f MiB/s (%.3f CPU s/GiB), "+
			"bare splice relay %.0f MiB/s (%.3f CPU s/GiB), the check alone %.3f CPU s/GiB", r+1,
			rate(sz.big, tsf), serveCPU, rate(sz.big, tchecked), checkedCPU, rate(sz.big, tdirect), nodeCPU,
			rate(sz.big, tfront), cpu, rate(sz.big, trelay), relayCPU, checkCPU)
	}
	// Not targets: what the data node spends against the bare ServeFile (the difference is
	// mostly the block checks of disk.Store.Send), and the floor the front door's CPU per GiB
	// sits on, on this kernel (see Relay). Quick sizes can be under the 10 ms resolution of
	// /proc's CPU times.
	if Median(servePerGiB) > 0 {
		t.Logf("data node CPU per GiB sent: median %.3f s, %.2f times the bare ServeFile's median %.3f s; "+
			"ServeFile's and the check's alone (%.3f s) add up to %.3f s",
			Median(nodePerGiB), Median(nodePerGiB)/Median(servePerGiB), Median(servePerGiB),
			Median(checkPerGiB), Median(servePerGiB)+Median(checkPerGiB))
		t.Logf("cores kept busy by the server and the client together (of %d): ServeFile %.2f, data node %.2f (medians)",
			runtime.NumCPU(), Median(serveCores), Median(directCores))
	}
	if Median(relayPerGiB) > 0 {
		t.Logf("front door CPU per GiB: median %.3f s, %.2f times the bare splice relay's median %.3f s",
			Median(cpuPerGiB), Median(cpuPerGiB)/Median(relayPerGiB), Median(relayPerGiB))
	}
	// Not a target: the data node against a ServeFile that checks nothing. Issue 6 has every
	// download check every byte it sends, and on a 2-core machine that costs more than the 10%
	// issue 7 first allowed against a bare ServeFile (docs/BENCHMARKS.md, "Session 9"). The
	// target is against the checked ServeFile: the physical limit of a download that checks.
	t.Logf("data node against the bare ServeFile (not a target): median %.3f of its speed, rounds %.3f",
		Median(bareRatios), bareRatios)
	rep.add(t, Result{"download_direct_vs_checked_servefile", Median(checkedRatios), ">=", 0.90, "ratio"})
	rep.add(t, Result{"download_frontdoor_vs_direct", Median(frontRatios), ">=", 0.60, "ratio"})
	rep.add(t, Result{"download_frontdoor_cpu_per_gib", Median(cpuPerGiB), "<=", 0.35, "cpu_s/GiB"})
}

func benchMemory(t *testing.T, e *env, sz sizes, rep *reporter) {
	ctx := context.Background()
	ids := make([]string, sz.memUploads)
	for i := range ids {
		ids[i] = e.collection(t, sz.memSize+mib, 1)
	}
	// One upload first, so that idle means "has served, now idle", not "never served".
	if _, _, err := e.upload(ctx, e.s.URL, ids[0], mib); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	dn, cp := e.node.PID(), e.s.ControlPlane.PID()
	idleDN, err1 := RSS(dn)
	idleCP, err2 := RSS(cp)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	sampler := SampleRSS([]int{dn, cp}, 50*time.Millisecond)
	start := time.Now()
	errs := make(chan error, len(ids))
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			_, _, err := e.upload(ctx, e.s.URL, id, sz.memSize)
			errs <- err
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	peak, samples, err := sampler.Stop()
	if err != nil {
		t.Fatalf("sample RSS: %v", err)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	perDN := float64(peak[dn]-idleDN) / mib / float64(len(ids))
	perCP := float64(peak[cp]-idleCP) / mib / float64(len(ids))
	t.Logf("%d concurrent uploads of %d MiB through the front door in %s (%d RSS samples): "+
		"data node idle %.1f MiB peak %.1f MiB (%.3f MiB per transfer); control plane idle %.1f MiB peak %.1f MiB (%.3f MiB per transfer)",
		len(ids), sz.memSize/mib, elapsed.Round(time.Millisecond), samples,
		float64(idleDN)/mib, float64(peak[dn])/mib, perDN, float64(idleCP)/mib, float64(peak[cp])/mib, perCP)
	// The target holds for each process; the worse of the two is the figure.
	rep.add(t, Result{"upload_memory_per_transfer", max(perDN, perCP), "<=", 0.75, "MiB"})
}

func benchSmallUploads(t *testing.T, e *env, sz sizes, rep *reporter) {
	ids := make([]string, sz.smallClients)
	for i := range ids {
		ids[i] = e.collection(t, 64*kib, 1)
	}
	body := e.pat.block[:4*kib]
	// The floor the disk sets: the same file-system work as a small upload (a 4 KiB file
	// written and fsynced, two renames and a removal each followed by a directory fsync), with
	// nothing else, by as many workers.
	ref, err := durableWriteReference(e.dir, len(ids), body, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk reference: %d workers doing a small upload's file-system work: %.0f/s, p99 %.1f ms, %.2f ms CPU each",
		len(ids), ref.perSec, ref.p99, ref.cpuMs)
	warmup := time.Second
	start := time.Now()
	measureFrom, end := start.Add(warmup), start.Add(warmup+sz.smallWindow)
	var mu sync.Mutex
	var lat []float64
	var failures int
	var firstErr error
	var total atomic.Int64 // every upload, warm-up included, for the CPU figure
	defer e.prof.during(t, "small_uploads", warmup+sz.smallWindow)()
	pids := []int{e.s.ControlPlane.PID(), e.node.PID()}
	cpuBefore := make([]time.Duration, len(pids))
	for i, pid := range pids {
		if cpuBefore[i], err = CPUTime(pid); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				a, err := e.s.Upload(ctx, e.s.URL, e.token, id, strings.NewReader(string(body)), stack.UploadOptions{})
				cancel()
				d := time.Since(t0)
				total.Add(1)
				if err == nil && a.Status != http.StatusOK {
					err = fmt.Errorf("small upload: %s", a)
				}
				if t0.Before(measureFrom) {
					continue
				}
				mu.Lock()
				if err != nil {
					failures++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat = append(lat, float64(d)/float64(time.Millisecond))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	window := time.Since(measureFrom).Seconds()
	if failures > 0 {
		t.Errorf("%d small uploads failed; first: %v", failures, firstErr)
	}
	perSec := float64(len(lat)) / window
	var cpu [2]float64 // ms per upload, over warm-up and window alike
	for i, pid := range pids {
		if after, err := CPUTime(pid); err == nil {
			cpu[i] = (after - cpuBefore[i]).Seconds() * 1000 / float64(max(1, total.Load()))
		}
	}
	// Not a target: how much of the data node's CPU the file-system work alone would take
	// (the reference ran faster than the uploads do, so this is an estimate).
	t.Logf("CPU per upload: control plane %.2f ms, data node %.2f ms (the file-system work alone took %.2f ms in the disk reference)",
		cpu[0], cpu[1], ref.cpuMs)
	p99 := Percentile(lat, 99)
	t.Logf("%d clients: %d uploads in %.1f s (%.0f/s), p50 %.1f ms, p99 %.1f ms, %d failed",
		len(ids), len(lat), window, perSec, Percentile(lat, 50), p99, failures)
	rep.add(t, Result{"small_uploads_per_s", perSec, ">=", 500, "/s"})
	rep.add(t, Result{"small_uploads_p99", p99, "<=", 50, "ms"})
}

// diskReference is what durableWriteReference measured: loops per second, their p99 in
// milliseconds and the CPU each took in milliseconds, the kernel's file-system work included.
type diskReference struct{ perSec, p99, cpuMs float64 }

// durableWriteReference runs workers loops of create + write body + fsync + rename + fsync
// dir + rename + fsync dir + remove the previous file + fsync dir, in dir, for d. The CPU is
// this process's, which does nothing else meanwhile.
func durableWriteReference(dir string, workers int, body []byte, d time.Duration) (diskReference, error) {
	var mu sync.Mutex
	var lat []float64
	var firstErr error
	cpuBefore, err := CPUTime(os.Getpid())
	if err != nil {
		return diskReference{}, err
	}
	end := time.Now().Add(d)
	syncDir := func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			wd := filepath.Join(dir, fmt.Sprintf("ref-%d", w))
			defer os.RemoveAll(wd)
			err := os.Mkdir(wd, 0o750)
			prev := ""
			for i := 0; err == nil && time.Now().Before(end); i++ {
				t0 := time.Now()
				tmp, staged, final := filepath.Join(wd, ".tmp"), filepath.Join(wd, ".staged"), filepath.Join(wd, strconv.Itoa(i))
				var f *os.File
				if f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640); err != nil {
					break
				}
				_, err = f.Write(body)
				if err == nil {
					err = f.Sync()
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				for _, step := range []func() error{
					func() error { return os.Rename(tmp, staged) },
					func() error { return syncDir(wd) },
					func() error { return os.Rename(staged, final) },
					func() error { return syncDir(wd) },
					func() error {
						if prev == "" {
							return nil
						}
						if err := os.Remove(prev); err != nil {
							return err
						}
						return syncDir(wd)
					},
				} {
					if err == nil {
						err = step()
					}
				}
				prev = final
				mu.Lock()
				lat = append(lat, float64(time.Since(t0))/float64(time.Millisecond))
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				firstErr = cmp.Or(firstErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	cpuAfter, err := CPUTime(os.Getpid())
	if err != nil {
		return diskReference{}, err
	}
	ref := diskReference{perSec: float64(len(lat)) / d.Seconds(), p99: Percentile(lat, 99)}
	if len(lat) > 0 {
		ref.cpuMs = (cpuAfter - cpuBefore).Seconds() * 1000 / float64(len(lat))
	}
	return ref, firstErr
}

// describeDisk names the filesystem holding dir, for logs.
func describeDisk(dir string) string {
	out, err := exec.Command("df", "-hT", dir).Output()
	if err != nil {
		return dir
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return dir + " (" + strings.Join(strings.Fields(lines[len(lines)-1]), " ") + ")"
}

// mustJSON is json.Marshal for values that always encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
