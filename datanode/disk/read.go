package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// OpenVersion opens a committed version for reading. It returns the *os.File itself so that
// http.ServeContent can hand it to sendfile; the caller closes it.
func (s *Store) OpenVersion(collectionID, versionID string) (*os.File, os.FileInfo, error) {
	p, err := s.versionPath(collectionID, versionID)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("version %s: %w", versionID, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("open version: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat version: %w", err)
	}
	return f, fi, nil
}

// Remove deletes a committed version durably (the directory is fsynced); removing one that is
// not there is not an error, so rotation can be retried.
func (s *Store) Remove(collectionID, versionID string) error {
	return s.remove(collectionID, versionID, true)
}

// Drop deletes a committed version like Remove but without the directory fsync: for a file the
// control plane has already recorded as deleted, whose tombstone makes the sweeper remove it
// again and make that durable (SyncCollection) before acknowledging it, so a removal lost in a
// crash is done again. It saves an upload that rotates a version out one fsync.
func (s *Store) Drop(collectionID, versionID string) error {
	return s.remove(collectionID, versionID, false)
}

// SyncCollection makes every removal and rename done so far in the collection's directory
// durable: after many Drops, one directory fsync does what a Remove each would. A collection
// this node does not hold has nothing to sync.
func (s *Store) SyncCollection(collectionID string) error {
	if err := checkCollectionID(collectionID); err != nil {
		return err
	}
	v := s.volumeOf(collectionID)
	if v == nil {
		return nil
	}
	return syncDir(v.collection(collectionID))
}

func (s *Store) remove(collectionID, versionID string, durable bool) error {
	p, err := s.versionPath(collectionID, versionID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := removeFile(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove version: %w", err)
	}
	if err := removeFile(versionSumsPath(filepath.Dir(p), filepath.Base(p))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove version: %w", err)
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(p))
}

func (s *Store) versionPath(collectionID, versionID string) (string, error) {
	if err := checkCollectionID(collectionID); err != nil {
		return "", err
	}
	versionID, err := checkUUID("version", versionID)
	if err != nil {
		return "", err
	}
	v := s.volumeOf(collectionID)
	if v == nil {
		return "", fmt.Errorf("collection %s: %w", collectionID, ErrNotFound)
	}
	return filepath.Join(v.collection(collectionID), versionID), nil
}

// VerifyFunc receives one stored version: its size and sha256 (hex), or the error that
// prevented reading it.
type VerifyFunc func(collectionID, versionID string, size int64, sum string, err error)

// Verify reads every committed version on every disk, in collection order, and reports its
// sha256 to fn; comparing with the control plane's records is the caller's job. It returns
// early only when ctx ends or a directory cannot be listed.
func (s *Store) Verify(ctx context.Context, fn VerifyFunc) error {
	s.mu.RLock()
	collections := make([]string, 0, len(s.where))
	for c := range s.where {
		collections = append(collections, c)
	}
	s.mu.RUnlock()
	slices.Sort(collections)

	b := s.getBlock()
	defer s.bufs.Put(b)
	for _, c := range collections {
		v := s.volumeOf(c)
		if v == nil {
			continue // removed meanwhile
		}
		names, err := readNames(v.collection(c))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		slices.Sort(names)
		for _, n := range names {
			if strings.HasPrefix(n, ".") {
				continue // temp and staged files are not versions
			}
			if _, ok := canonicalUUID(n); !ok {
				s.log.Warn("ignoring unexpected file in collection directory", "path", filepath.Join(v.collection(c), n))
				continue
			}
			size, sum, err := hashFile(ctx, filepath.Join(v.collection(c), n), b.data)
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			if errors.Is(err, fs.ErrNotExist) {
				continue // rotated out while we listed
			}
			fn(c, n, size, sum, err)
		}
	}
	return nil
}

func hashFile(ctx context.Context, path string, buf []byte) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	return readWhole(ctx, f, buf, nil)
}

// readWhole reads f from its start through buf and returns its size and sha256 (hex), feeding
// sums too when it is not nil. It reads with ReadAt, so f's offset is left alone.
func readWhole(ctx context.Context, f *os.File, buf []byte, sums *blockSummer) (int64, string, error) {
	h := sha256.New()
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return size, "", err
		}
		n, err := f.ReadAt(buf, size)
		h.Write(buf[:n])
		if sums != nil {
			sums.Write(buf[:n])
		}
		size += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return size, "", fmt.Errorf("read version at byte %d: %w", size, err)
		}
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}
