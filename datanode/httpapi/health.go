package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"sync"
	"time"

	"backuprepo/datanode/admission"
	"backuprepo/datanode/disk"
	"backuprepo/shared"
)

// healthAnswer is the seed's /health shape (SPEC §4.3); a data node reports storage only. Each
// map has one key, so the encoding is deterministic.
type healthAnswer struct {
	Status       []map[string]bool     `json:"status"`
	Messages     []map[string][]string `json:"messages"`
	GlobalStatus bool                  `json:"global_status"`
	Ident        []string              `json:"ident"`
}

// storageAnswer builds the /health answer from the result of disk.Store.Check.
func storageAnswer(checks map[string]error) healthAnswer {
	msgs := []string{}
	dirs := make([]string, 0, len(checks))
	for d := range checks {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	for _, d := range dirs {
		if err := checks[d]; err != nil {
			msgs = append(msgs, d+": "+err.Error())
		}
	}
	ok := len(msgs) == 0 && len(checks) > 0
	if len(checks) == 0 {
		msgs = append(msgs, "no disks configured")
	}
	return healthAnswer{
		Status:       []map[string]bool{{"storage": ok}},
		Messages:     []map[string][]string{{"storage": msgs}},
		GlobalStatus: ok,
		Ident:        []string{"global_status=" + pyBool(ok), "storage=" + pyBool(ok)},
	}
}

// pyBool spells booleans as the seed's Python generation did in "ident".
func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// codeMatches compares a presented secret with the configured one in constant time; hashing
// first hides the configured code's length too. An empty code never matches.
func codeMatches(got, want string) bool {
	if got == "" || want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	if !codeMatches(r.URL.Query().Get("code"), h.healthCode) {
		writeError(w, shared.Errorf(shared.CodeForbidden, "a valid health check code is required"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	a := storageAnswer(h.store.Check(ctx))
	status := http.StatusOK
	if !a.GlobalStatus {
		status = http.StatusServiceUnavailable
		h.log.Warn("storage check failed", "messages", a.Messages[0]["storage"])
	}
	writeJSON(w, status, a)
}

func (h *Handler) livez(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 when the node can do useful work: it is not shutting down, every disk
// passes the write/read/delete probe and the control plane answers (without it no upload can
// be admitted and no download resolved). The node only starts serving after its start-up
// cleanup, so that needs no flag. Results are cached for a few seconds so that frequent
// probes cost nothing.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h.stopping.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("shutting down\n"))
		return
	}
	if reason := h.ready.check(r.Context()); reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(reason + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// readiness caches the outcome of the readiness probe.
type readiness struct {
	store *disk.Store
	cp    *admission.Client
	now   func() time.Time

	mu     sync.Mutex
	at     time.Time
	reason string
}

const readinessTTL = 3 * time.Second

func newReadiness(store *disk.Store, cp *admission.Client, now func() time.Time) *readiness {
	return &readiness{store: store, cp: cp, now: now}
}

// check returns "" when ready, else why not.
func (rd *readiness) check(ctx context.Context) string {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if !rd.at.IsZero() && rd.now().Sub(rd.at) < readinessTTL {
		return rd.reason
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rd.reason = ""
	for dir, err := range rd.store.Check(ctx) {
		if err != nil {
			rd.reason = "disk " + dir + " failed its check"
			break
		}
	}
	if rd.reason == "" {
		if err := rd.cp.Ping(ctx); err != nil {
			rd.reason = "control plane unreachable"
		}
	}
	rd.at = rd.now()
	return rd.reason
}
