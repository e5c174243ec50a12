package disk

import (
	"strings"

	"backuprepo/shared"
)

// validCollectionID reports whether id matches ^[A-Za-z0-9-]{1,64}$. Only these names ever
// become path elements, so "..", slashes and NUL bytes cannot reach the filesystem.
func validCollectionID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// canonicalUUID returns id in lower case if it is a UUID in the 8-4-4-4-12 hex form. Lower
// case keeps one file name per id on case-sensitive filesystems.
func canonicalUUID(id string) (string, bool) {
	if len(id) != 36 {
		return "", false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return "", false
			}
		}
	}
	return strings.ToLower(id), true
}

func checkCollectionID(id string) error {
	if !validCollectionID(id) {
		return shared.Errorf(shared.CodeInvalidInput, "invalid collection id")
	}
	return nil
}

func checkUUID(kind, id string) (string, error) {
	c, ok := canonicalUUID(id)
	if !ok {
		return "", shared.Errorf(shared.CodeInvalidInput, "invalid %s id", kind)
	}
	return c, nil
}
