package shared

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error code, the same in REST answers and GraphQL extensions.
type Code string

const (
	CodeInvalidInput            Code = "INVALID_INPUT"
	CodeUnauthenticated         Code = "UNAUTHENTICATED"
	CodeInvalidCredentials      Code = "INVALID_CREDENTIALS"
	CodeTokenRevoked            Code = "TOKEN_REVOKED"
	CodeTokenExpired            Code = "TOKEN_EXPIRED"
	CodeForbidden               Code = "FORBIDDEN"
	CodeIPNotAllowed            Code = "IP_NOT_ALLOWED"
	CodeTenantSuspended         Code = "TENANT_SUSPENDED"
	CodeNotFound                Code = "NOT_FOUND"
	CodeConflict                Code = "CONFLICT"
	CodeRateLimited             Code = "RATE_LIMITED"
	CodeWindowClosed            Code = "WINDOW_CLOSED"
	CodeUploadInProgress        Code = "UPLOAD_IN_PROGRESS"
	CodeCollectionFull          Code = "COLLECTION_FULL"
	CodeCollectionNotEmpty      Code = "COLLECTION_NOT_EMPTY"
	CodeVersionTooLarge         Code = "VERSION_TOO_LARGE"
	CodeCollectionQuotaExceeded Code = "COLLECTION_QUOTA_EXCEEDED"
	CodeTenantQuotaExceeded     Code = "TENANT_QUOTA_EXCEEDED"
	CodeNotEncrypted            Code = "NOT_ENCRYPTED"
	CodeEmptyBody               Code = "EMPTY_BODY"
	CodeChecksumMismatch        Code = "CHECKSUM_MISMATCH"
	CodeInsufficientStorage     Code = "INSUFFICIENT_STORAGE"
	CodeNoCapacity              Code = "NO_CAPACITY"
	CodeNodeUnavailable         Code = "NODE_UNAVAILABLE"
	CodeDependencyUnavailable   Code = "DEPENDENCY_UNAVAILABLE"
	CodeCollectionUnhealthy     Code = "COLLECTION_UNHEALTHY"
	CodeNodeSignatureInvalid    Code = "NODE_SIGNATURE_INVALID"
	CodePayloadTooLarge         Code = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType    Code = "UNSUPPORTED_MEDIA_TYPE"
	CodeQueryTooComplex         Code = "QUERY_TOO_COMPLEX"
	CodeVersionDamaged          Code = "VERSION_DAMAGED"
	CodeInternal                Code = "INTERNAL"
)

// Error is the one application error type. Message is safe to show to the caller.
type Error struct {
	Code    Code
	Message string
	Err     error // the cause, for logs only; never shown to callers
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an application error with a caller-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap attaches a code and a caller-safe message to a cause.
func Wrap(err error, code Code, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or CodeInternal.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the caller-safe message of err; internal errors get a generic text so
// that SQL or stack details never leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
