package bench

import (
	"crypto/sha256"
	"time"
)

// SpeedReference measures this machine's speed on one core: sha256 throughput over a buffer
// that stays in cache (compute) and copy throughput between two buffers far larger than any
// cache (memory), each the best of 3 passes, in MB/s. The targets are ratios and counts, but
// the CPU each operation costs moves with the machine: the same code measured 1.0 ms of
// control-plane CPU per small upload on one VM and 1.4 ms on another with the same CPU model
// name (docs/BENCHMARKS.md). Recorded with every run, these two figures tell such machines
// apart.
func SpeedReference() (sha256MBps, copyMBps float64) {
	small := make([]byte, 256<<10)
	for i := range small {
		small[i] = byte(i)
	}
	const hashed = 256 << 20
	sha256MBps = bestOf3(hashed, func() {
		h := sha256.New()
		for n := 0; n < hashed; n += len(small) {
			h.Write(small)
		}
		h.Sum(nil)
	})
	src, dst := make([]byte, 256<<20), make([]byte, 256<<20)
	for i := 0; i < len(src); i += 4096 {
		src[i], dst[i] = 1, 1 // fault the pages in before timing
	}
	copyMBps = bestOf3(len(src), func() { copy(dst, src) })
	return sha256MBps, copyMBps
}

func bestOf3(bytes int, f func()) float64 {
	best := time.Duration(1 << 62)
	for range 3 {
		start := time.Now()
		f()
		best = min(best, time.Since(start))
	}
	return float64(bytes) / 1e6 / best.Seconds()
}
