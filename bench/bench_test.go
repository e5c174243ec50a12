package bench

import (
	"bytes"
	"io"
	"math"
	"os"
	"testing"
	"testing/iotest"
)

func TestResultLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    Result
		want string
	}{
		{Result{"upload_direct_vs_disk", 0.9312, ">=", 0.9, "ratio"},
			"bench: upload_direct_vs_disk value=0.931 target=>=0.9 unit=ratio pass=true"},
		{Result{"upload_direct_vs_disk", 0.8999, ">=", 0.9, "ratio"},
			"bench: upload_direct_vs_disk value=0.9 target=>=0.9 unit=ratio pass=false"},
		{Result{"small_uploads_per_s", 500, ">=", 500, "/s"},
			"bench: small_uploads_per_s value=500 target=>=500 unit=/s pass=true"},
		{Result{"db_round_trips_per_upload", 6.02, "<=", 6, "statements"},
			"bench: db_round_trips_per_upload value=6.02 target=<=6 unit=statements pass=false"},
		{Result{"node_death_detection", math.NaN(), "<=", 6, "s"},
			"bench: node_death_detection value=NaN target=<=6 unit=s pass=false"},
		{Result{"x", -0.0001, "<=", 0, "MiB"}, "bench: x value=0 target=<=0 unit=MiB pass=true"},
		{Result{"x", 1, "==", 1, "s"}, "bench: x value=1 target===1 unit=s pass=false"},
	}
	for _, tt := range tests {
		if got := tt.r.Line(); got != tt.want {
			t.Errorf("Line() = %q, want %q", got, tt.want)
		}
	}
}

func TestMedianPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100..1, unsorted
	}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"median odd", Median([]float64{3, 1, 2}), 2},
		{"median even", Median([]float64{4, 1, 3, 2}), 2.5},
		{"median one", Median([]float64{7}), 7},
		{"p99 of 100", Percentile(hundred, 99), 99},
		{"p100 of 100", Percentile(hundred, 100), 100},
		{"p50 of 100", Percentile(hundred, 50), 50},
		{"p99 of 3", Percentile([]float64{1, 3, 2}, 99), 3},
		{"p1 of 3", Percentile([]float64{1, 3, 2}, 1), 1},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if !math.IsNaN(Median(nil)) || !math.IsNaN(Percentile(nil, 99)) {
		t.Error("empty input must give NaN")
	}
	in := []float64{3, 1, 2}
	Median(in)
	if in[0] != 3 {
		t.Error("Median sorted its argument in place")
	}
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\tdatanode\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n")
	if got, err := parseVmRSS(status); err != nil || got != 12345<<10 {
		t.Errorf("parseVmRSS = %d, %v; want %d", got, err, 12345<<10)
	}
	if _, err := parseVmRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("parseVmRSS without VmRSS: want an error")
	}
	// The name holds spaces and a parenthesis; utime=250, stime=50.
	stat := []byte("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 123 456 789\n")
	if got, err := parseStatCPU(stat); err != nil || got != 300 {
		t.Errorf("parseStatCPU = %d, %v; want 300", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("parseStatCPU of a short line: want an error")
	}
	// user nice system idle iowait irq softirq steal guest guest_nice: guest is not added.
	proc := []byte("cpu  100 10 50 700 20 5 5 110 40 0\ncpu0 50 5 25 350 10 2 3 55 20 0\nintr 1 2\n")
	m, err := parseMachineCPU(proc)
	if err != nil || m != (MachineCPU{Total: 1000, Steal: 110}) {
		t.Errorf("parseMachineCPU = %+v, %v; want total 1000, steal 110", m, err)
	}
	if got := (MachineCPU{Total: 1000, Steal: 110}).StolenPercent(MachineCPU{Total: 1400, Steal: 130}); got != 5 {
		t.Errorf("StolenPercent = %v, want 5", got)
	}
	if _, err := parseMachineCPU([]byte("cpu  1 2 3\n")); err == nil {
		t.Error("parseMachineCPU of a short line: want an error")
	}
	if _, err := parseMachineCPU([]byte("intr 1 2\n")); err == nil {
		t.Error("parseMachineCPU without a cpu line: want an error")
	}
}

func TestProcOfSelf(t *testing.T) {
	t.Parallel()
	rss, err := RSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("RSS(self) = %d, %v", rss, err)
	}
	if _, err := CPUTime(os.Getpid()); err != nil {
		t.Fatalf("CPUTime(self): %v", err)
	}
	s := SampleRSS([]int{os.Getpid()}, 5e6)
	peak, n, err := s.Stop()
	if err != nil || n < 1 || peak[os.Getpid()] <= 0 {
		t.Fatalf("sampler: peak %v, %d samples, %v", peak, n, err)
	}
}

func TestPatternReader(t *testing.T) {
	t.Parallel()
	p := NewPattern(1000, 7)
	for _, n := range []int64{0, 1, 999, 1000, 1001, 5 * 1000, 300_123} {
		want := bytes.Repeat(p.block, int(n/1000)+1)[:n]
		got, err := io.ReadAll(iotest.OneByteReader(p.Reader(n)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Read of %d bytes: %d bytes, %v; content equal: %t", n, len(got), err, bytes.Equal(got, want))
		}
		var buf bytes.Buffer
		if w, err := p.Reader(n).WriteTo(&buf); err != nil || w != n || !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("WriteTo of %d bytes: wrote %d, %v; content equal: %t", n, w, err, bytes.Equal(buf.Bytes(), want))
		}
		got, _ = io.ReadAll(p.Reader(n)) // large reads
		if !bytes.Equal(got, want) {
			t.Fatalf("ReadAll of %d bytes differs", n)
		}
	}
	if bytes.Equal(NewPattern(64, 1).block, NewPattern(64, 2).block) {
		t.Error("different seeds gave the same block")
	}
}
