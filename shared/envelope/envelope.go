// Package envelope writes and reads the JSON envelope of every REST answer
// ({"status":true,"data":…} or {"status":false,"error":…,"code":…}) and maps error codes to
// HTTP statuses in one place for both the control plane and the data nodes.
package envelope

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"backuprepo/shared"
)

// Status maps an error code to its HTTP status. Unknown codes are 500.
func Status(code shared.Code) int {
	s, _ := status(code)
	return s
}

// status reports false for codes it does not know, so a test can catch a new code that was
// declared without a mapping.
func status(code shared.Code) (int, bool) {
	switch code {
	case shared.CodeInvalidInput, shared.CodeNotEncrypted, shared.CodeEmptyBody, shared.CodeChecksumMismatch:
		return http.StatusBadRequest, true
	case shared.CodeUnauthenticated, shared.CodeInvalidCredentials, shared.CodeTokenRevoked, shared.CodeTokenExpired,
		shared.CodeNodeSignatureInvalid:
		return http.StatusUnauthorized, true
	case shared.CodeForbidden, shared.CodeIPNotAllowed, shared.CodeTenantSuspended, shared.CodeWindowClosed:
		return http.StatusForbidden, true
	case shared.CodeNotFound:
		return http.StatusNotFound, true
	case shared.CodeConflict, shared.CodeUploadInProgress, shared.CodeCollectionFull, shared.CodeCollectionNotEmpty:
		return http.StatusConflict, true
	case shared.CodeVersionTooLarge, shared.CodeCollectionQuotaExceeded, shared.CodeTenantQuotaExceeded, shared.CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge, true
	case shared.CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType, true
	case shared.CodeQueryTooComplex:
		// 422 rather than 400: the request is well-formed, it only exceeds the server's
		// depth or complexity limit; gqlgen answers validation failures the same way.
		return http.StatusUnprocessableEntity, true
	case shared.CodeRateLimited:
		return http.StatusTooManyRequests, true
	case shared.CodeInsufficientStorage:
		return http.StatusInsufficientStorage, true
	case shared.CodeNoCapacity, shared.CodeNodeUnavailable, shared.CodeDependencyUnavailable, shared.CodeCollectionUnhealthy:
		return http.StatusServiceUnavailable, true
	case shared.CodeInternal, shared.CodeVersionDamaged:
		return http.StatusInternalServerError, true
	}
	return http.StatusInternalServerError, false
}

// Envelope is the JSON shape of every answer, for clients that read them.
type Envelope struct {
	Status bool            `json:"status"`
	Data   json.RawMessage `json:"data,omitempty"`
	Error  string          `json:"error,omitempty"`
	Code   shared.Code     `json:"code,omitempty"`
}

// Err returns nil for a successful envelope and otherwise the *shared.Error it carries.
func (e Envelope) Err() error {
	if e.Status {
		return nil
	}
	code := e.Code
	if code == "" {
		code = shared.CodeInternal
	}
	return shared.Errorf(code, "%s", e.Error)
}

type success struct {
	Status bool `json:"status"`
	Data   any  `json:"data"`
}

type failure struct {
	Status bool        `json:"status"`
	Error  string      `json:"error"`
	Code   shared.Code `json:"code"`
}

// WriteData answers status with {"status":true,"data":data}; nil data is written as {}.
// Data that cannot be encoded gives a 500 INTERNAL envelope instead.
func WriteData(w http.ResponseWriter, status int, data any) {
	if data == nil {
		data = struct{}{}
	}
	b, err := json.Marshal(success{Status: true, Data: data})
	if err != nil {
		WriteError(w, fmt.Errorf("encode response: %w", err))
		return
	}
	write(w, status, b)
}

// WriteError answers with the status of err's code and {"status":false,"error","code"}. The
// message is the caller-safe one: errors without a *shared.Error become "internal error".
func WriteError(w http.ResponseWriter, err error) {
	code := shared.ErrorCode(err)
	b, mErr := json.Marshal(failure{Status: false, Error: shared.ErrorMessage(err), Code: code})
	if mErr != nil {
		// Marshalling two strings cannot fail; keep a fixed answer in case it ever does.
		b = []byte(`{"status":false,"error":"internal error","code":"INTERNAL"}`)
		code = shared.CodeInternal
	}
	write(w, Status(code), b)
}

func write(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n')) // a failed write means the client left; nothing to do
}

// DefaultMaxBytes is the body limit DecodeJSON uses when given a limit <= 0.
const DefaultMaxBytes = 1 << 20

// DecodeJSON reads one JSON value from r's body into v. It requires Content-Type
// application/json (UNSUPPORTED_MEDIA_TYPE otherwise), refuses bodies above maxBytes
// (PAYLOAD_TOO_LARGE), unknown fields, trailing data and malformed JSON (INVALID_INPUT with a
// message that says what and where).
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any, maxBytes int64) error {
	if err := requireJSON(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, maxBytes)
	}
	// Anything but whitespace after the value is an error; this also reads to the limit so an
	// oversized body with a valid prefix is still refused.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			return shared.Errorf(shared.CodeInvalidInput, "request body must hold a single JSON value; found more after it")
		}
		if e := decodeError(err, maxBytes); shared.ErrorCode(e) == shared.CodePayloadTooLarge {
			return e
		}
		return shared.Wrap(err, shared.CodeInvalidInput, "request body must hold a single JSON value; found more after it")
	}
	return nil
}

func requireJSON(ct string) error {
	if ct == "" {
		return shared.Errorf(shared.CodeUnsupportedMediaType, "Content-Type must be application/json; none was sent")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return shared.Errorf(shared.CodeUnsupportedMediaType, "Content-Type must be application/json, not %q", truncate(ct))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return shared.Errorf(shared.CodeUnsupportedMediaType, "JSON must be UTF-8, not charset %q", truncate(cs))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

func decodeError(err error, maxBytes int64) error {
	var (
		tooBig    *http.MaxBytesError
		syntax    *json.SyntaxError
		typ       *json.UnmarshalTypeError
		invalid   *json.InvalidUnmarshalError
		appErr    *shared.Error
		unknownFx = "json: unknown field "
	)
	switch {
	case errors.As(err, &tooBig):
		return shared.Wrap(err, shared.CodePayloadTooLarge, fmt.Sprintf("request body is larger than %d bytes", maxBytes))
	case errors.Is(err, io.EOF):
		return shared.Errorf(shared.CodeInvalidInput, "request body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return shared.Wrap(err, shared.CodeInvalidInput, "request body ends in the middle of a JSON value")
	case errors.As(err, &syntax):
		return shared.Wrap(err, shared.CodeInvalidInput, fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, syntax.Error()))
	case errors.As(err, &typ):
		where := "the body"
		if typ.Field != "" {
			where = "field " + strconv.Quote(typ.Field)
		}
		return shared.Wrap(err, shared.CodeInvalidInput, fmt.Sprintf("%s must be %s, not a JSON %s", where, kind(typ), typ.Value))
	case strings.HasPrefix(err.Error(), unknownFx):
		// encoding/json has no typed error for unknown fields; its message is stable.
		return shared.Wrap(err, shared.CodeInvalidInput, "unknown field "+truncate(strings.TrimPrefix(err.Error(), unknownFx)))
	case errors.As(err, &invalid):
		return fmt.Errorf("decode request body: %w", err) // a programming error: INTERNAL
	case errors.As(err, &appErr):
		return appErr // a custom UnmarshalJSON already said what is wrong
	}
	return shared.Wrap(err, shared.CodeInvalidInput, "invalid JSON value: "+truncate(strings.TrimPrefix(err.Error(), "json: ")))
}

// kind names the Go type a JSON value had to fit, in JSON words.
func kind(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "another type"
	}
	switch k := e.Type.Kind(); k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer that fits " + k.String()
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + e.Type.String()
}

// MaxEnvelope bounds how much of a response body Decode reads.
const MaxEnvelope = 64 << 20

// Decode reads an envelope from a response body, for clients of the REST API. Call Err on
// the result to turn a failure envelope back into a *shared.Error.
func Decode(body io.Reader) (Envelope, error) {
	var e Envelope
	if err := json.NewDecoder(io.LimitReader(body, MaxEnvelope)).Decode(&e); err != nil {
		return e, fmt.Errorf("decode envelope: %w", err)
	}
	return e, nil
}
