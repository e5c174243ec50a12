// Package cleanup removes from a data node's disks the files of versions the control plane
// deleted (rotated out, deleted by a manager, or in a collection deleted by force).
package cleanup

import (
	"context"
	"log/slog"
	"time"

	"backuprepo/datanode/disk"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

// ControlPlane lists and acknowledges the node's pending file deletions.
type ControlPlane interface {
	Deletions(ctx context.Context, limit int) ([]internalapi.FileRef, error)
	AckDeletions(ctx context.Context, versionIDs []string) error
}

// batch is how many deletions one round trip handles.
const batch = 500

// Sweeper deletes files the control plane lists as deleted, and nothing else: a node pointed at
// the wrong control plane is told of no deletions, so it deletes nothing.
type Sweeper struct {
	store *disk.Store
	cp    ControlPlane
	log   *slog.Logger
}

// New returns a sweeper.
func New(store *disk.Store, cp ControlPlane, log *slog.Logger) *Sweeper {
	return &Sweeper{store: store, cp: cp, log: log}
}

// Once removes every listed file and acknowledges it, page by page, and returns how many
// files it acknowledged.
func (s *Sweeper) Once(ctx context.Context) (int, error) {
	done := 0
	for {
		files, err := s.cp.Deletions(ctx, batch)
		if err != nil {
			return done, err
		}
		if len(files) == 0 {
			return done, nil
		}
		removed := make([]string, 0, len(files))
		// Files are dropped one by one and made durable one directory at a time: a page of
		// rotations in one collection costs one directory fsync, not one per file.
		dropped := make(map[string][]string)
		for _, f := range files {
			err := s.store.Drop(f.CollectionID, f.VersionID)
			if shared.ErrorCode(err) == shared.CodeInvalidInput {
				// An id the store refuses can never name a file: acknowledge it so it stops coming.
				removed = append(removed, f.VersionID)
				continue
			}
			if err != nil {
				// Kept for the next round; the others are acknowledged.
				s.log.Error("remove a deleted version's file", "collection", f.CollectionID, "version", f.VersionID, "err", err)
				continue
			}
			dropped[f.CollectionID] = append(dropped[f.CollectionID], f.VersionID)
		}
		for c, ids := range dropped {
			// The collection's directory stays even when empty: an upload starting now may be
			// about to create its temporary file in it.
			if err := s.store.SyncCollection(c); err != nil {
				s.log.Error("make removals durable; kept for the next round", "collection", c, "files", len(ids), "err", err)
				continue
			}
			removed = append(removed, ids...)
		}
		if err := s.cp.AckDeletions(ctx, removed); err != nil {
			return done, err
		}
		done += len(removed)
		if len(removed) < len(files) || len(files) < batch {
			return done, nil
		}
	}
}

// Run sweeps every interval until ctx ends; failures are logged and retried next time.
func (s *Sweeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.Once(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("file deletions not swept", "err", err)
		} else if n > 0 {
			s.log.Info("removed files of deleted versions", "files", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
