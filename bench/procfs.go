package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux
// architecture Go supports (the kernel ABI fixes it regardless of CONFIG_HZ).
const userHZ = 100

// RSS is the resident set size of process pid (VmRSS), in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	f, ok := fieldsAfter(status, "VmRSS:")
	if !ok {
		return 0, errors.New("no VmRSS line (kernel thread or zombie)")
	}
	if len(f) != 2 || string(f[1]) != "kB" {
		return 0, fmt.Errorf("unexpected VmRSS line %q", bytes.Join(f, []byte(" ")))
	}
	kb, err := strconv.ParseInt(string(f[0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse VmRSS: %w", err)
	}
	return kb << 10, nil
}

// fieldsAfter returns the fields of the first line of b that starts with prefix, after it.
func fieldsAfter(b []byte, prefix string) ([][]byte, bool) {
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(prefix)); ok {
			return bytes.Fields(rest), true
		}
	}
	return nil, false
}

// CPUTime is the user plus system CPU time process pid has used so far.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	ticks, err := parseStatCPU(b)
	if err != nil {
		return 0, err
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// MachineCPU is the machine's CPU time so far, from the first line of /proc/stat, in ticks:
// all of it and the part the hypervisor stole (time a virtual CPU wanted to run and another
// guest had the physical one).
type MachineCPU struct{ Total, Steal int64 }

// ReadMachineCPU reads /proc/stat.
func ReadMachineCPU() (MachineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineCPU{}, err
	}
	return parseMachineCPU(b)
}

// StolenPercent is the share of the machine's CPU time the hypervisor stole between m and a
// later reading, in percent; 0 when no time passed.
func (m MachineCPU) StolenPercent(later MachineCPU) float64 {
	total := later.Total - m.Total
	if total <= 0 {
		return 0
	}
	return 100 * float64(later.Steal-m.Steal) / float64(total)
}

// parseMachineCPU reads the "cpu" line: user nice system idle iowait irq softirq steal (guest
// time is already inside user and nice, so it is not added again).
func parseMachineCPU(stat []byte) (MachineCPU, error) {
	f, ok := fieldsAfter(stat, "cpu ")
	if !ok {
		return MachineCPU{}, errors.New("no cpu line in /proc/stat")
	}
	if len(f) < 8 {
		return MachineCPU{}, fmt.Errorf("malformed /proc/stat cpu line: %d fields", len(f))
	}
	var m MachineCPU
	for i, s := range f[:8] {
		v, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return MachineCPU{}, fmt.Errorf("parse /proc/stat cpu line: %w", err)
		}
		m.Total += v
		if i == 7 {
			m.Steal = v
		}
	}
	return m, nil
}

// parseStatCPU returns utime+stime in ticks. Fields are counted after the last ')' because
// the command name (field 2) may itself hold spaces and parentheses.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat: no ')'")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the name", len(f))
	}
	var sum int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat cpu time: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// RSSSampler samples the RSS of a set of processes at a fixed interval and keeps the peak of
// each.
type RSSSampler struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	peak    map[int]int64
	samples int
	err     error
}

// SampleRSS starts sampling pids every interval until Stop.
func SampleRSS(pids []int, interval time.Duration) *RSSSampler {
	ctx, cancel := context.WithCancel(context.Background())
	s := &RSSSampler{cancel: cancel, done: make(chan struct{}), peak: make(map[int]int64)}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample(pids)
			select {
			case <-ctx.Done():
				s.sample(pids)
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *RSSSampler) sample(pids []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	for _, pid := range pids {
		v, err := RSS(pid)
		if err != nil {
			s.err = errors.Join(s.err, err)
			continue
		}
		s.peak[pid] = max(s.peak[pid], v)
	}
}

// Stop ends sampling and returns the peak RSS of every process, the number of samples taken
// and the first error of any sample (a process that exited).
func (s *RSSSampler) Stop() (map[int]int64, int, error) {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.samples, s.err
}
