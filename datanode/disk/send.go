package disk

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// sendSegment is how many bytes Send checks ahead of what it sends: large enough that the
// sendfile calls stay long, small enough that a damaged block is found before the bytes
// around it are sent, with little memory either way (checking reads through one pooled block).
const sendSegment = 8 * sumsBlock

// Send writes bytes [off, off+n) of the version open in f to w, checking every block they
// touch against sums before any of its bytes are written. Bytes go from f to w with
// io.Copy(w, io.LimitReader(f, …)), so an HTTP response writer hands them to sendfile(2); the
// check of the next segment runs meanwhile on another goroutine, reading through the page
// cache with pread.
//
// A block that fails its checksum ends Send with a *DamagedError before any byte of that
// segment is written; the caller must then make the client see a failure (an error answer
// when nothing was written yet, else an aborted connection), never a short or wrong body.
func (s *Store) Send(ctx context.Context, w io.Writer, f *os.File, collectionID, versionID string, sums Sums, off, n int64) (int64, error) {
	if off < 0 || n < 0 || off+n > sums.Size {
		return 0, fmt.Errorf("send bytes %d+%d of a %d-byte version: out of range", off, n, sums.Size)
	}
	if n == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	first := off / sendSegment * sendSegment // segments are aligned so their blocks are whole
	checked := make(chan error, 1)           // one segment checked ahead of the one being sent
	go func() {
		b := s.getBlock()
		defer s.bufs.Put(b)
		for seg := first; seg < off+n; seg += sendSegment {
			err := s.checkBlocks(f, sums, seg, min(seg+sendSegment, sums.Size), b.data)
			if err != nil {
				err = &DamagedError{collectionID, versionID, err.Error()}
			}
			select {
			case checked <- err:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var sent int64
	for seg := first; seg < off+n; seg += sendSegment {
		select {
		case err := <-checked:
			if err != nil {
				return sent, err
			}
		case <-ctx.Done():
			return sent, ctx.Err()
		}
		lo, hi := max(seg, off), min(seg+sendSegment, off+n)
		if _, err := f.Seek(lo, io.SeekStart); err != nil {
			return sent, fmt.Errorf("seek version: %w", err)
		}
		m, err := io.Copy(w, io.LimitReader(f, hi-lo))
		sent += m
		if err != nil {
			return sent, err
		}
		if m != hi-lo {
			return sent, fmt.Errorf("version file ended at byte %d, its record says %d: %w", lo+m, sums.Size, io.ErrUnexpectedEOF)
		}
	}
	return sent, nil
}

// checkBlocks reads the whole blocks of [lo, hi) through buf and compares their CRC-32C with
// sums; lo is block-aligned and hi is a block boundary or the end of the file.
func (s *Store) checkBlocks(f *os.File, sums Sums, lo, hi int64, buf []byte) error {
	for blk := lo / sumsBlock; blk*sumsBlock < hi; blk++ {
		start := blk * sumsBlock
		end := min(start+sumsBlock, sums.Size)
		var crc uint32
		for pos := start; pos < end; {
			m, err := f.ReadAt(buf[:min(int64(len(buf)), end-pos)], pos)
			crc = crc32.Update(crc, castagnoli, buf[:m])
			pos += int64(m)
			if err != nil && (!errors.Is(err, io.EOF) || pos < end) {
				return fmt.Errorf("block %d (bytes %d-%d): read: %w", blk, start, end-1, err)
			}
		}
		if crc != sums.Blocks[blk] {
			return fmt.Errorf("block %d (bytes %d-%d) fails its checksum", blk, start, end-1)
		}
	}
	return nil
}
