package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Every stored version but the smallest (see noSidecarMax) has a sidecar of block checksums:
// the CRC-32C of each 1 MiB block of the file. They let a download check every byte it sends,
// Range requests included, at a cost small beside the transfer (CRC-32C runs at ~27 GB/s here
// against ~1.9 GB/s for sha256, see BenchmarkBlockSums), and catch a flipped bit before it
// leaves the node.
//
// The sidecar is derived data: the version's sha256, recorded by the control plane, is the
// truth. So it is written without fsync; one lost or torn by a crash fails its own checksum and
// is rebuilt from the file, after the file's sha256 has been checked against the record.
//
// A version of at most noSidecarMax bytes has no sidecar: a download checks it whole against
// its recorded sha256 instead, which costs at most 36 µs of one core (sha256 at ~1.8 GB/s).
// Writing the sidecar costs more than that on every upload (create, write and rename a file,
// and unlink it when the version is rotated out): 16% of the data node's CPU in a profile of
// the small_uploads benchmark (docs/BENCHMARKS.md). Backups are written far more often than
// they are read.
//
// Names, next to the data files:
//
//	.tmp-<random>.sums      beside its temp file (removed at Open like it)
//	.staged-<uploadID>.sums beside its staged upload
//	.<versionID>.sums       beside its committed version
const (
	sumsBlock  = 1 << 20
	sumsSuffix = ".sums"
	sumsMagic  = "BRSUMS1\n"
	sumsHeader = len(sumsMagic) + 4 + 8 + 4 // magic, block size, file size, block count

	noSidecarMax = 64 << 10
)

// hasSidecar reports whether a version of size bytes keeps its block checksums in a sidecar.
func hasSidecar(size int64) bool { return size > noSidecarMax }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sums are the block checksums of one file.
type Sums struct {
	Size   int64
	Blocks []uint32
}

// blockSummer computes block checksums of a stream written in pieces of any size.
type blockSummer struct {
	sums Sums
	cur  uint32 // CRC of the block being filled
	fill int    // bytes of it so far
}

func (b *blockSummer) Write(p []byte) {
	b.sums.Size += int64(len(p))
	for len(p) > 0 {
		n := min(len(p), sumsBlock-b.fill)
		b.cur = crc32.Update(b.cur, castagnoli, p[:n])
		b.fill += n
		p = p[n:]
		if b.fill == sumsBlock {
			b.sums.Blocks = append(b.sums.Blocks, b.cur)
			b.cur, b.fill = 0, 0
		}
	}
}

func (b *blockSummer) Sums() Sums {
	s := b.sums
	if b.fill > 0 {
		s.Blocks = append(s.Blocks[:len(s.Blocks):len(s.Blocks)], b.cur)
	}
	return s
}

func blockCount(size int64) int64 { return (size + sumsBlock - 1) / sumsBlock }

// fsBlock is the allocation unit assumed for Overhead: 4 KiB, that of ext4, XFS and tmpfs on
// amd64.
const fsBlock = 4096

// Overhead is the disk space a version of size bytes may take beyond size: its checksum
// sidecar (a filesystem block for up to ~1000 MiB of data, more beyond) and the rounding of the
// file's last block. Admission takes it off the room it reports, so that the node's reserve
// holds with the sidecars too.
func Overhead(size int64) int64 {
	side := int64(sumsHeader+4) + 4*blockCount(max(size, 0))
	return (side+fsBlock-1)/fsBlock*fsBlock + fsBlock
}

func (s Sums) encode() []byte {
	out := make([]byte, 0, sumsHeader+4*len(s.Blocks)+4)
	out = append(out, sumsMagic...)
	out = binary.LittleEndian.AppendUint32(out, sumsBlock)
	out = binary.LittleEndian.AppendUint64(out, uint64(s.Size))
	out = binary.LittleEndian.AppendUint32(out, uint32(len(s.Blocks)))
	for _, c := range s.Blocks {
		out = binary.LittleEndian.AppendUint32(out, c)
	}
	return binary.LittleEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
}

var errBadSums = errors.New("block checksums unreadable")

func decodeSums(b []byte, size int64) (Sums, error) {
	if len(b) < sumsHeader+4 || string(b[:len(sumsMagic)]) != sumsMagic {
		return Sums{}, errBadSums
	}
	body, tail := b[:len(b)-4], b[len(b)-4:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(tail) {
		return Sums{}, errBadSums
	}
	p := body[len(sumsMagic):]
	if binary.LittleEndian.Uint32(p) != sumsBlock || int64(binary.LittleEndian.Uint64(p[4:])) != size {
		return Sums{}, errBadSums
	}
	n := int64(binary.LittleEndian.Uint32(p[12:]))
	if n != blockCount(size) || int64(len(p)-16) != 4*n {
		return Sums{}, errBadSums
	}
	s := Sums{Size: size, Blocks: make([]uint32, n)}
	for i := range s.Blocks {
		s.Blocks[i] = binary.LittleEndian.Uint32(p[16+4*i:])
	}
	return s, nil
}

// writeSums writes s to path through a temp name and a rename, without fsync (see above).
func writeSums(path string, s Sums) error {
	tmp, err := randomName(tmpPrefix)
	if err != nil {
		return err
	}
	tmp = filepath.Join(filepath.Dir(path), tmp+sumsSuffix)
	if err := os.WriteFile(tmp, s.encode(), filePerm); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write block checksums: %w", mapNoSpace(err))
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write block checksums: %w", err)
	}
	return nil
}

func versionSumsPath(dir, versionID string) string {
	return filepath.Join(dir, "."+versionID+sumsSuffix)
}

// DamagedError says a stored version does not hold what was recorded.
type DamagedError struct {
	CollectionID, VersionID string
	Detail                  string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("version %s of collection %s is damaged: %s", e.VersionID, e.CollectionID, e.Detail)
}

// LoadSums returns the block checksums of a committed version whose file f is open. When the
// sidecar is missing or unreadable, or the version is small enough to have none, it computes
// them from the whole file, which must then have the recorded size and sha256 (hex);
// otherwise the version is damaged (*DamagedError). A sidecar computed so is saved, except for
// a small version.
func (s *Store) LoadSums(collectionID, versionID string, f *os.File, size int64, sha string) (Sums, error) {
	p, err := s.versionPath(collectionID, versionID)
	if err != nil {
		return Sums{}, err
	}
	sp := versionSumsPath(filepath.Dir(p), filepath.Base(p))
	if hasSidecar(size) { // a small version's sidecar, written by an older node, is not read
		b, err := os.ReadFile(sp)
		if err == nil {
			sums, derr := decodeSums(b, size)
			if derr == nil {
				return sums, nil
			}
			s.log.Warn("block checksums unreadable; rebuilding them from the file", "collection", collectionID, "version", versionID)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return Sums{}, fmt.Errorf("read block checksums: %w", err)
		}
	}

	buf := s.getBlock()
	defer s.bufs.Put(buf)
	var bs blockSummer
	_, got, err := readWhole(context.Background(), f, buf.data, &bs)
	if err != nil {
		return Sums{}, &DamagedError{collectionID, versionID, err.Error()}
	}
	sums := bs.Sums()
	if sums.Size != size || got != sha {
		return Sums{}, &DamagedError{collectionID, versionID,
			fmt.Sprintf("file has %d bytes with sha256 %s, recorded %d bytes with sha256 %s", sums.Size, got, size, sha)}
	}
	if !hasSidecar(size) {
		return sums, nil
	}
	if err := writeSums(sp, sums); err != nil {
		s.log.Warn("could not save rebuilt block checksums", "collection", collectionID, "version", versionID, "err", err)
	}
	return sums, nil
}

// isSums tells sidecar names from data names.
func isSums(name string) bool { return strings.HasSuffix(name, sumsSuffix) }

// sumsOwner returns the data file a sidecar name belongs to.
func sumsOwner(name string) string {
	name = strings.TrimSuffix(name, sumsSuffix)
	if strings.HasPrefix(name, stagedPrefix) {
		return name
	}
	return strings.TrimPrefix(name, ".")
}
