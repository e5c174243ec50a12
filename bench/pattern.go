package bench

import (
	"io"
	"math/rand/v2"
)

// writeChunk is how much WriteTo hands to the destination per call: big enough for few
// syscalls, small enough to stay in L2 cache.
const writeChunk = 256 << 10

// Pattern is a block of pseudo-random bytes that readers repeat endlessly: upload bodies of
// any size at memory speed, without holding them in memory and without compressible runs.
type Pattern struct{ block []byte }

// NewPattern fills a block of size bytes from seed.
func NewPattern(size int, seed uint64) *Pattern {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24),
		byte(seed >> 32), byte(seed >> 40), byte(seed >> 48), byte(seed >> 56)})
	b := make([]byte, size)
	_, _ = r.Read(b) // ChaCha8.Read never fails
	return &Pattern{block: b}
}

// Reader returns a reader of the first n bytes of the endless repetition.
func (p *Pattern) Reader(n int64) *PatternReader { return &PatternReader{p: p, left: n} }

// PatternReader reads a Pattern; it implements io.WriterTo so that io.Copy (and net/http's
// request body copy) writes large chunks straight from the block.
type PatternReader struct {
	p    *Pattern
	off  int
	left int64
}

func (r *PatternReader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	n := 0
	for n < len(b) {
		c := copy(b[n:], r.p.block[r.off:])
		n += c
		r.advance(c)
	}
	return n, nil
}

// WriteTo writes what is left to w.
func (r *PatternReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.left > 0 {
		end := min(len(r.p.block), r.off+writeChunk)
		if int64(end-r.off) > r.left {
			end = r.off + int(r.left)
		}
		n, err := w.Write(r.p.block[r.off:end])
		total += int64(n)
		r.advance(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Len is the number of bytes left.
func (r *PatternReader) Len() int64 { return r.left }

func (r *PatternReader) advance(n int) {
	r.left -= int64(n)
	r.off += n
	if r.off == len(r.p.block) {
		r.off = 0
	}
}
