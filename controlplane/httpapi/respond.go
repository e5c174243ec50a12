package httpapi

import (
	"encoding/json"
	"net/http"

	"backuprepo/shared"
	"backuprepo/shared/envelope"
)

// refuse answers an envelope error whose HTTP status follows from its code.
func refuse(w http.ResponseWriter, code shared.Code, message string) {
	envelope.WriteError(w, shared.Errorf(code, "%s", message))
}

// writeJSONBody writes a JSON answer that is not an envelope (the seed's /health shape, and
// the 405 answer whose status comes from HTTP rather than from an error code).
func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing left to tell it
}
