package disk

import "testing"

func TestValidCollectionID(t *testing.T) {
	t.Parallel()
	long := "a123456789b123456789c123456789d123456789e123456789f123456789abcd"
	tests := []struct {
		id   string
		want bool
	}{
		{"backups", true},
		{"Tenant-1-db", true},
		{"9f1c2d3e-0000-4000-8000-000000000000", true},
		{long, true},
		{long + "e", false},
		{"", false},
		{".", false},
		{"..", false},
		{"../etc", false},
		{"a/b", false},
		{"a%2Fb", false},
		{"a\x00b", false},
		{"a b", false},
		{"a_b", false},
		{"a.b", false},
		{"ａbc", false}, // full-width look-alike
		{"а", false},   // Cyrillic a
	}
	for _, tt := range tests {
		if got := validCollectionID(tt.id); got != tt.want {
			t.Errorf("validCollectionID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestCanonicalUUID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id, want string
		ok       bool
	}{
		{"0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d6e", "0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d6e", true},
		{"0190F5A2-7C4E-7B3A-9D2E-1F2A3B4C5D6E", "0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d6e", true},
		{"0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d6", "", false},
		{"0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d6e0", "", false},
		{"0190f5a27c4e-7b3a-9d2e-1f2a3b4c5d6e0", "", false},
		{"0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d6g", "", false},
		{"../../../../../../../../../etc/passw", "", false},
		{"0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d/e", "", false},
		{"0190f5a2-7c4e-7b3a-9d2e-1f2a3b4c5d\x00e", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := canonicalUUID(tt.id)
		if got != tt.want || ok != tt.ok {
			t.Errorf("canonicalUUID(%q) = %q, %v; want %q, %v", tt.id, got, ok, tt.want, tt.ok)
		}
	}
}
