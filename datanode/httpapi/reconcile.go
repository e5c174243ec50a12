package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"backuprepo/datanode/admission"
	"backuprepo/datanode/disk"
	"backuprepo/shared"
)

// Reconciler settles staged uploads whose commit outcome the node does not know: those found
// at start-up (the node stopped between staging and committing) and those whose commit could
// not reach the control plane. It asks the control plane what became of each and finalizes or
// discards the file accordingly. Staged files are never served, so waiting costs only space.
type Reconciler struct {
	store *disk.Store
	cp    *admission.Client
	log   *slog.Logger
	now   func() time.Time
	// settle is how long after a failed commit the outcome is first asked, so that a commit
	// still running in the control plane is not mistaken for one that never happened.
	settle time.Duration

	mu    sync.Mutex
	items map[string]pendingUpload
}

type pendingUpload struct {
	staged    disk.Staged
	notBefore time.Time
}

// ReconcilerConfig is what a Reconciler needs.
type ReconcilerConfig struct {
	Store        *disk.Store
	ControlPlane *admission.Client
	Logger       *slog.Logger
	// Settle is how long after a failed commit its outcome is first asked (default 1 minute).
	Settle time.Duration
}

// NewReconciler returns a reconciler that already holds the store's staged uploads.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	rc := &Reconciler{store: cfg.Store, cp: cfg.ControlPlane, log: cfg.Logger, now: time.Now,
		settle: cfg.Settle, items: make(map[string]pendingUpload)}
	if rc.log == nil {
		rc.log = slog.New(slog.DiscardHandler)
	}
	if rc.settle <= 0 {
		rc.settle = time.Minute
	}
	for _, st := range cfg.Store.Pending() {
		rc.items[st.UploadID] = pendingUpload{staged: st}
	}
	return rc
}

// Add hands over an upload whose commit outcome is unknown.
func (rc *Reconciler) Add(st disk.Staged) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.items[st.UploadID] = pendingUpload{staged: st, notBefore: rc.now().Add(rc.settle)}
}

// Len is the number of uploads still unsettled.
func (rc *Reconciler) Len() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.items)
}

// Once tries to settle every due upload and returns how many remain.
func (rc *Reconciler) Once(ctx context.Context) int {
	rc.mu.Lock()
	due := make([]disk.Staged, 0, len(rc.items))
	now := rc.now()
	for _, p := range rc.items {
		if !now.Before(p.notBefore) {
			due = append(due, p.staged)
		}
	}
	rc.mu.Unlock()
	for _, st := range due {
		if ctx.Err() != nil {
			break
		}
		if rc.settleOne(ctx, st) {
			rc.mu.Lock()
			delete(rc.items, st.UploadID)
			rc.mu.Unlock()
		}
	}
	return rc.Len()
}

// Run calls Once every interval until ctx ends.
func (rc *Reconciler) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if rc.Len() > 0 {
				rc.Once(ctx)
			}
		}
	}
}

// settleOne reports whether st is settled (finalized or discarded).
func (rc *Reconciler) settleOne(ctx context.Context, st disk.Staged) bool {
	log := rc.log.With("upload", st.UploadID, "collection", st.CollectionID)
	out, err := rc.cp.Outcome(ctx, st.UploadID)
	if err != nil && shared.ErrorCode(err) != shared.CodeNotFound {
		log.Warn("cannot learn the outcome of a staged upload yet", "err", err)
		return false
	}
	if err == nil && out.Committed {
		if err := rc.store.Finalize(st, out.Version.ID); err != nil {
			log.Error("finalize a committed upload", "version", out.Version.ID, "err", err)
			return false
		}
		log.Info("finalized an upload committed before the node lost track of it", "version", out.Version.ID)
		return true
	}
	// Not committed (or unknown to the control plane): abort first, so that a commit still
	// in flight cannot land after the file is gone.
	if err := rc.cp.Abort(ctx, st.UploadID); err != nil && shared.ErrorCode(err) != shared.CodeNotFound {
		log.Warn("abort of an uncommitted staged upload failed; will ask again", "err", err)
		return false
	}
	if err := rc.store.Discard(st); err != nil {
		log.Error("discard an uncommitted staged upload", "err", err)
		return false
	}
	log.Info("discarded a staged upload that was never committed")
	return true
}
