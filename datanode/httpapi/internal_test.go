package httpapi

import (
	"errors"
	"net/http"
	"testing"

	"backuprepo/shared"
)

func TestOpenPGPStart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		head []byte
		want bool
	}{
		{"armour", []byte("-----BEGIN PGP MESSAGE-----\n"), true},
		{"armour after a newline", []byte("\r\n-----BEGIN PGP MESSAGE-----\n"), true},
		{"armoured signature", []byte("-----BEGIN PGP SIGNATURE-----\n"), false},
		{"armour cut short", []byte("-----BEGIN PGP MESS"), false},
		{"old PKESK", []byte{0x84, 0x8c}, true},
		{"old SKESK", []byte{0x8c, 0x0d}, true},
		{"old symmetrically encrypted", []byte{0xa4, 0x00}, true},
		{"old marker", []byte{0xa8, 0x03}, true},
		{"old literal", []byte{0xac, 0x10}, false},
		{"old compressed", []byte{0xa3, 0x01}, false},
		{"old signature", []byte{0x89, 0x01}, false},
		{"new PKESK", []byte{0xc1, 0x5e}, true},
		{"new SEIPD", []byte{0xd2, 0xff}, true},
		{"new AEAD", []byte{0xd4, 0x40}, true},
		{"new literal", []byte{0xcb, 0x10}, false},
		{"new one-pass signature", []byte{0xc4, 0x0d}, false},
		{"header byte alone", []byte{0xd2}, false},
		{"gzip", []byte{0x1f, 0x8b}, false},
		{"text", []byte("hello"), false},
		{"empty", nil, false},
	}
	for _, c := range cases {
		if got := openPGPStart(c.head); got != c.want {
			t.Errorf("%s: openPGPStart(%x) = %v, want %v", c.name, c.head, got, c.want)
		}
	}
}

func TestDigestsFrom(t *testing.T) {
	t.Parallel()
	const b64 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" // sha256("test")
	const hx = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	cases := []struct {
		name   string
		header http.Header
		n      int
		bad    bool
	}{
		{"none", http.Header{}, 0, false},
		{"digest", http.Header{"Digest": {"sha-256=" + b64}}, 1, false},
		{"digest among others", http.Header{"Digest": {"md5=Q2hlY2sgSW50ZWdyaXR5IQ==, SHA-256=" + b64}}, 1, false},
		{"only other algorithms", http.Header{"Digest": {"md5=Q2hlY2sgSW50ZWdyaXR5IQ=="}}, 0, false},
		{"content-digest", http.Header{"Content-Digest": {"sha-256=:" + b64 + ":"}}, 1, false},
		{"hex", http.Header{"X-Content-Sha256": {hx}}, 1, false},
		{"hex upper case", http.Header{"X-Content-Sha256": {"9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"}}, 1, false},
		{"both", http.Header{"Digest": {"sha-256=" + b64}, "X-Content-Sha256": {hx}}, 2, false},
		{"short hex", http.Header{"X-Content-Sha256": {"abcd"}}, 0, true},
		{"bad base64", http.Header{"Digest": {"sha-256=***"}}, 0, true},
		{"sha-512 length under sha-256", http.Header{"Digest": {"sha-256=" + b64 + b64}}, 0, true},
	}
	for _, c := range cases {
		got, err := digestsFrom(c.header)
		if c.bad {
			if shared.ErrorCode(err) != shared.CodeInvalidInput {
				t.Errorf("%s: err = %v, want INVALID_INPUT", c.name, err)
			}
			continue
		}
		if err != nil || len(got) != c.n {
			t.Errorf("%s: %d digests, err %v; want %d", c.name, len(got), err, c.n)
		}
		if err := checkDigests(hx, got, nil); err != nil {
			t.Errorf("%s: matching digests refused: %v", c.name, err)
		}
		if c.n > 0 {
			err := checkDigests("0000000000000000000000000000000000000000000000000000000000000000", got, nil)
			if shared.ErrorCode(err) != shared.CodeChecksumMismatch {
				t.Errorf("%s: mismatch gave %v", c.name, err)
			}
		}
	}
}

func TestContentDisposition(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"backup-3":      `attachment; filename="backup-3"`,
		`a"b\c`:         `attachment; filename="a\"b\\c"`,
		"sauvegarde-é":  `attachment; filename="sauvegarde-_"; filename*=UTF-8''sauvegarde-%C3%A9`,
		"l'été;x=y":     `attachment; filename="l'_t_;x=y"; filename*=UTF-8''l%27%C3%A9t%C3%A9%3Bx%3Dy`,
		"line\nbreak":   `attachment; filename="line_break"; filename*=UTF-8''line%0Abreak`,
		"with space.gz": `attachment; filename="with space.gz"`,
	}
	for in, want := range cases {
		if got := contentDisposition(in); got != want {
			t.Errorf("contentDisposition(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestCodeMatches(t *testing.T) {
	t.Parallel()
	cases := []struct {
		got, want string
		ok        bool
	}{
		{"abc", "abc", true}, {"", "abc", false}, {"abc", "", false}, {"", "", false},
		{"abd", "abc", false}, {"abcd", "abc", false},
	}
	for _, c := range cases {
		if codeMatches(c.got, c.want) != c.ok {
			t.Errorf("codeMatches(%q, %q) != %v", c.got, c.want, c.ok)
		}
	}
}

func TestStorageAnswer(t *testing.T) {
	t.Parallel()
	a := storageAnswer(map[string]error{"/b": errors.New("read-only file system"), "/a": nil, "/c": errors.New("gone")})
	if a.GlobalStatus || a.Status[0]["storage"] || len(a.Messages[0]["storage"]) != 2 ||
		a.Messages[0]["storage"][0] != "/b: read-only file system" || a.Ident[1] != "storage=False" {
		t.Fatalf("answer = %+v", a)
	}
	if a := storageAnswer(nil); a.GlobalStatus {
		t.Fatal("no disks must not be healthy")
	}
	if a := storageAnswer(map[string]error{"/a": nil}); !a.GlobalStatus || a.Messages[0]["storage"] == nil {
		t.Fatalf("healthy answer = %+v", a)
	}
}

func TestValidCollectionID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{"abc-DEF-123": true, "": false, "a/b": false, "..": false,
		"a_b": false, "0123456789012345678901234567890123456789012345678901234567890123": true,
		"01234567890123456789012345678901234567890123456789012345678901234": false} {
		if validCollectionID(id) != want {
			t.Errorf("validCollectionID(%q) != %v", id, want)
		}
	}
}
