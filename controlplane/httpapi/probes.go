package httpapi

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

// livez answers 200 while the process can serve HTTP at all.
func (s *server) livez(w http.ResponseWriter, _ *http.Request) {
	envelope.WriteData(w, http.StatusOK, map[string]bool{"alive": true})
}

// readyz answers 200 when PostgreSQL and Redis answer, so an orchestrator routes traffic only
// to replicas that can serve it.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	var database, redis []string
	var wg sync.WaitGroup
	wg.Go(func() { database = s.pingDatabase(r.Context()) })
	wg.Go(func() { redis = s.pingRedis(r.Context()) })
	wg.Wait()
	if failed := slices.Concat(database, redis); len(failed) > 0 {
		refuse(w, shared.CodeDependencyUnavailable,
			"not ready: "+strings.Join(failed, "; "))
		return
	}
	envelope.WriteData(w, http.StatusOK, map[string]bool{"database": true, "redis": true})
}
