package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
	"backuprepo/shared/window"
)

// CollectionIDPattern is what a client-chosen collection id must match; UUIDs match it too.
var CollectionIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// Bounds on free text, so one row cannot grow without limit.
const (
	maxDescription      = 4096
	maxTags             = 50
	maxTagLength        = 100
	maxTemplateLength   = 200
	maxBackupsCountCap  = 100000
	maxWindows          = 20
	maxHealthCodeLength = 256
)

func invalid(format string, args ...any) error {
	return shared.Errorf(shared.CodeInvalidInput, format, args...)
}

// text checks a free-text field: valid UTF-8, no NUL (PostgreSQL text cannot hold it) and at
// most max characters.
func text(field, v string, max int) error {
	if !utf8.ValidString(v) || strings.ContainsRune(v, 0) {
		return invalid("%s must be valid UTF-8 text without NUL characters", field)
	}
	if utf8.RuneCountInString(v) > max {
		return invalid("%s must be at most %d characters", field, max)
	}
	return nil
}

// cleanTags validates tags and drops duplicates, keeping the first occurrence's order.
func cleanTags(tags []string) ([]string, error) {
	if len(tags) > maxTags {
		return nil, invalid("at most %d tags", maxTags)
	}
	out := []string{}
	for _, t := range tags {
		if strings.TrimSpace(t) == "" {
			return nil, invalid("tags must not be empty")
		}
		if err := text("tag", t, maxTagLength); err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// ValidateCollection checks every rule of SPEC §2 that depends on the collection alone. An
// unlimited collection (maxCollectionSize 0) is FORBIDDEN unless the caller is systemAdmin.
func ValidateCollection(c shared.Collection, systemAdmin bool) error {
	if !CollectionIDPattern.MatchString(c.ID) {
		return invalid("collection id must be a UUID or match %s", CollectionIDPattern)
	}
	if err := text("description", c.Description, maxDescription); err != nil {
		return err
	}
	if _, err := cleanTags(c.Tags); err != nil {
		return err
	}
	if err := text("filenameTemplate", c.FilenameTemplate, maxTemplateLength); err != nil {
		return err
	}
	if !strings.Contains(c.FilenameTemplate, "${version}") {
		return invalid("filenameTemplate must contain ${version}")
	}
	if strings.ContainsAny(c.FilenameTemplate, `/\`) {
		return invalid("filenameTemplate must not contain a slash or backslash")
	}
	if c.MaxBackupsCount < 1 || c.MaxBackupsCount > maxBackupsCountCap {
		return invalid("maxBackupsCount must be between 1 and %d", maxBackupsCountCap)
	}
	if c.MaxOneVersionSize < 1 {
		return invalid("maxOneVersionSize must be at least 1 byte")
	}
	if c.MaxCollectionSize < 0 {
		return invalid("maxCollectionSize must not be negative (0 = unlimited)")
	}
	if c.MaxCollectionSize == 0 && !systemAdmin {
		return shared.Errorf(shared.CodeForbidden, "only a systemAdmin may create a collection without a size limit")
	}
	if c.MaxCollectionSize > 0 {
		if c.MaxOneVersionSize > c.MaxCollectionSize {
			return invalid("maxOneVersionSize (%d) must not exceed maxCollectionSize (%d)", c.MaxOneVersionSize, c.MaxCollectionSize)
		}
		// Compare without multiplying, so huge values cannot overflow into a pass.
		if c.MaxOneVersionSize > math.MaxInt64/int64(c.MaxBackupsCount) ||
			c.MaxOneVersionSize*int64(c.MaxBackupsCount) > c.MaxCollectionSize {
			return invalid("maxCollectionSize (%d) must be at least maxOneVersionSize × maxBackupsCount", c.MaxCollectionSize)
		}
	}
	if !c.Strategy.Valid() {
		return invalid("strategy must be FIFO, FIFO_PLUS_OLDER or REJECT_WHEN_FULL")
	}
	if c.MaxOlderCopies < 0 || c.KeepOlderNotMoreThan < 0 {
		return invalid("maxOlderCopies and keepOlderNotMoreThan must not be negative")
	}
	if c.Strategy == shared.StrategyFIFOPlusOlder {
		if c.MaxOlderCopies < 1 {
			return invalid("FIFO_PLUS_OLDER needs maxOlderCopies of at least 1")
		}
		if c.KeepOlderNotMoreThan < time.Second {
			return invalid("FIFO_PLUS_OLDER needs keepOlderNotMoreThan of at least one second")
		}
	}
	if len(c.Windows) > maxWindows {
		return invalid("at most %d backup windows", maxWindows)
	}
	return window.Validate(c.Windows)
}

// validateHealthCode checks a health code before it is hashed.
func validateHealthCode(code string) error {
	return text("healthCode", code, maxHealthCodeLength)
}

// checkTenantQuota refuses a collection size that would take the tenant's declared space over
// its quota; an unlimited collection never fits under a quota.
func checkTenantQuota(t shared.Tenant, load postgres.TenantLoad, size int64) error {
	if t.Quota == 0 {
		return nil
	}
	if size == 0 {
		return shared.Errorf(shared.CodeTenantQuotaExceeded, "the tenant has a quota; its collections need a size limit")
	}
	if load.Declared > t.Quota || size > t.Quota-load.Declared {
		return shared.Errorf(shared.CodeTenantQuotaExceeded, "the tenant's quota is %d bytes and its other collections declare %d", t.Quota, load.Declared)
	}
	return nil
}

// checkUsageFits refuses new limits that the collection's current content already breaks.
// Bytes must fit for every strategy. The version count must fit only for REJECT_WHEN_FULL:
// FIFO strategies rotate the surplus away on the next upload, which is what lowering the count
// of a FIFO collection is meant to do.
func checkUsageFits(c shared.Collection, u shared.Usage) error {
	if c.MaxCollectionSize > 0 && u.Bytes > c.MaxCollectionSize {
		return shared.Errorf(shared.CodeCollectionQuotaExceeded, "the collection already holds %d bytes, more than %d", u.Bytes, c.MaxCollectionSize)
	}
	if c.Strategy == shared.StrategyRejectWhenFull && u.Versions > c.MaxBackupsCount {
		return shared.Errorf(shared.CodeCollectionFull, "the collection already holds %d versions, more than %d", u.Versions, c.MaxBackupsCount)
	}
	return nil
}

// HashHealthCode is how a collection's health code is stored.
func HashHealthCode(code string) string {
	if code == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:])
}

// HealthCodeMatches compares a presented code with a stored hash in constant time; an empty
// code or an empty hash never matches.
func HealthCodeMatches(hash, code string) bool {
	if hash == "" || code == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(HashHealthCode(code)), []byte(hash)) == 1
}
