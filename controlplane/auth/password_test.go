package auth

import (
	"strings"
	"testing"

	"backuprepo/shared"
)

func TestValidatePassword(t *testing.T) {
	t.Parallel()
	cases := []struct {
		pw string
		ok bool
	}{
		{"", false},
		{"short", false},
		{"elevenchars", false},
		{"twelve chars", true},
		{"ünïcödé-ünï", false}, // 11 characters, more bytes
		{"ünïcödé-ünïc", true},
		{strings.Repeat("x", maxPasswordLength), true},
		{strings.Repeat("x", maxPasswordLength+1), false},
	}
	for _, c := range cases {
		err := ValidatePassword(c.pw)
		if c.ok && err != nil {
			t.Errorf("ValidatePassword(%q) = %v, want nil", c.pw, err)
		}
		if !c.ok && shared.ErrorCode(err) != shared.CodeInvalidInput {
			t.Errorf("ValidatePassword(%q) = %v, want INVALID_INPUT", c.pw, err)
		}
	}
}

func TestHashAndCheckPassword(t *testing.T) {
	t.Parallel()
	h1, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=32768,t=2,p=2$") {
		t.Errorf("hash %q is not in the documented PHC form", h1)
	}
	h2, _ := HashPassword("correct horse battery")
	if h1 == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, c := range []struct {
		pw   string
		want bool
	}{
		{"correct horse battery", true},
		{"correct horse batterY", false},
		{"correct horse battery ", false},
		{"", false},
		{strings.Repeat("y", 5000), false},
	} {
		ok, err := CheckPassword(h1, c.pw)
		if err != nil || ok != c.want {
			t.Errorf("CheckPassword(h, %.20q) = %v, %v; want %v", c.pw, ok, err, c.want)
		}
	}
}

func TestCheckPasswordMalformedHash(t *testing.T) {
	t.Parallel()
	good, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	for _, bad := range []string{
		"",
		"plaintext",
		"$2a$10$abcdefghijklmnopqrstuv", // bcrypt
		strings.Replace(good, "argon2id", "argon2i", 1),
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Replace(good, "m=32768", "m=99999999", 1), // above the memory bound
		strings.Replace(good, "t=2", "t=0", 1),
		strings.Replace(good, "p=2", "p=300", 1),
		"$argon2id$v=19$m=32768,t=2,p=2$" + parts[4] + "$!!!",
		"$argon2id$v=19$m=32768,t=2,p=2$$" + parts[5],
	} {
		ok, err := CheckPassword(bad, "correct horse battery")
		if ok || err == nil {
			t.Errorf("CheckPassword(%q) = %v, %v; want false and an error", bad, ok, err)
		}
	}
}

// BenchmarkHashPassword shows the cost of one hash, to keep the parameters honest.
func BenchmarkHashPassword(b *testing.B) {
	for b.Loop() {
		if _, err := HashPassword("correct horse battery"); err != nil {
			b.Fatal(err)
		}
	}
}
