package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"backuprepo/backupctl/crypt"
)

// TestBackupMakerCompatibility sends exactly what Backup Maker (the Go generation's client)
// sends: its `make` POSTs a command's `gpg --armor` output to /api/alpha/…/version as a
// chunked body from a pipe, with only Authorization set (no Content-Type, no length), follows
// no redirect and treats nothing but the status line "200 OK" as success; its `restore` GETs
// /api/alpha/…/version/latest. Both go through the control plane's front door.
func TestBackupMakerCompatibility(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	dir := t.TempDir()
	pubFile, privFile := keys(t, dir)
	pub, err := readKeyFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	plain := randomBytes(1 << 20)

	// The armoured OpenPGP stream, produced while it is sent, as gpg's stdout would be.
	pr, pw := io.Pipe()
	go func() {
		enc, err := crypt.Encrypt(pw, pub, true, time.Now())
		if err == nil {
			_, err = enc.Write(plain)
		}
		if err == nil {
			err = enc.Close()
		}
		pw.CloseWithError(err)
	}()
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/alpha/repository/collection/"+f.Collection+"/version", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.Token)
	var sent *http.Request
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	hc.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r
		return http.DefaultTransport.RoundTrip(r)
	})
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if sent.ContentLength != 0 || sent.Header.Get("Content-Type") != "" || len(sent.TransferEncoding) != 0 {
		t.Fatalf("the request is not Backup Maker's: length %d, type %q", sent.ContentLength, sent.Header.Get("Content-Type"))
	}
	if resp.Status != "200 OK" {
		t.Fatalf("status line %q, Backup Maker wants exactly \"200 OK\"; body %s", resp.Status, body)
	}
	var up struct {
		Status bool
		Data   struct {
			Version struct {
				ID     string
				Number int64
				SHA256 string
			}
		}
	}
	if err := json.Unmarshal(body, &up); err != nil || !up.Status || up.Data.Version.Number != 1 || up.Data.Version.ID == "" {
		t.Fatalf("upload answer %s (%v)", body, err)
	}

	req, _ = http.NewRequest(http.MethodGet, s.URL+"/api/alpha/repository/collection/"+f.Collection+"/version/latest", nil)
	req.Header.Set("Authorization", "Bearer "+f.Token)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(stored), "-----BEGIN PGP MESSAGE-----") {
		t.Fatalf("restore download: %s %.80q", resp.Status, stored)
	}
	if etag := resp.Header.Get("ETag"); etag != `"`+up.Data.Version.SHA256+`"` {
		t.Fatalf("ETag %s, version sha256 %s", etag, up.Data.Version.SHA256)
	}
	priv, err := os.Open(privFile)
	if err != nil {
		t.Fatal(err)
	}
	defer priv.Close()
	keyring, err := crypt.ReadKeys(priv)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := crypt.Decrypt(bytes.NewReader(stored), keyring)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(pt)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Backup Maker's backup did not come back intact (%v)", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
