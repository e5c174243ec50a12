package httpapi

import (
	"encoding/json"
	"net/http"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

func writeData(w http.ResponseWriter, data any) { envelope.WriteData(w, http.StatusOK, data) }

func writeError(w http.ResponseWriter, err error) { envelope.WriteError(w, err) }

// writeErrorStatus is for the few answers whose status HTTP itself decides (405, 408), not a
// code; the body is the usual error envelope.
func writeErrorStatus(w http.ResponseWriter, status int, code shared.Code, message string) {
	writeJSON(w, status, struct {
		Status bool        `json:"status"`
		Error  string      `json:"error"`
		Code   shared.Code `json:"code"`
	}{false, message, code})
}

// writeJSON is for answers outside the envelope (the seed's /health shape).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing left to tell it
}
