package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/go-chi/chi/v5/middleware"

	"backuprepo/shared"
)

// recoverer turns a handler panic into a logged 500 INTERNAL answer instead of a dropped
// connection. It must run inside Metrics.middleware, which provides the status tracking writer.
func recoverer(logger *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				rv := recover()
				if rv == nil {
					return
				}
				if rv == http.ErrAbortHandler { //nolint:errorlint // sentinel value of a panic, not a wrapped error
					panic(rv) // net/http's way to abort a response on purpose
				}
				// The path only: query strings can carry the health and metrics codes.
				logger.Error("panic while serving a request", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(rv), "stack", string(debug.Stack()))
				if ww, ok := w.(middleware.WrapResponseWriter); ok && ww.Status() != 0 {
					return // part of the answer is out; the client sees a cut response
				}
				refuse(w, shared.CodeInternal, "internal error")
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// limitBody reads a small body fully before the handler runs, so that an oversized one gets
// the same clear 413 whichever handler (auth, gqlgen) would have read it.
func limitBody(limit int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tooLarge := fmt.Sprintf("request body is larger than the limit of %d bytes", limit)
			if r.ContentLength > limit {
				refuse(w, shared.CodePayloadTooLarge, tooLarge)
				return
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
			if err != nil {
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					refuse(w, shared.CodePayloadTooLarge, tooLarge)
					return
				}
				refuse(w, shared.CodeInvalidInput, "could not read the request body")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			next.ServeHTTP(w, r)
		})
	}
}
