package upload

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"backuprepo/e2e/stack"
	"backuprepo/shared/token"
)

// TestRefusals makes every refusal of SPEC §3 happen, through the front door and directly,
// and checks its status and machine code and that it left no file on the node, no version row
// and no live reservation — and, where a refusal has a way around it, that the way works.
func TestRefusals(t *testing.T) {
	t.Parallel()
	s := stack.Start(t, stack.Options{Binaries: bins})
	tenant := s.CreateTenant(t, nil)
	uploader, up := s.Uploader(t, tenant, "backupUploader", "backupDownloader")
	small := limits(tenant, 3, 64*kib, 192*kib) // no extra space: a version may have 64 KiB
	data := payload(t, 10*kib)

	for _, r := range routes {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()

			t.Run("401 without or with a bad token", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
				now := time.Now()
				claims := token.Claims{Subject: uploader.ID, TenantID: tenant, ID: uuid.NewString(),
					IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix()}
				expired := claims
				expired.IssuedAt, expired.Expiry = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
				for _, bad := range []struct{ name, token, code string }{
					{"none", "", "UNAUTHENTICATED"},
					{"malformed", "not-a-jwt", "UNAUTHENTICATED"},
					{"signed by another key", stack.SignWith(t, otherKey, claims), "UNAUTHENTICATED"},
					{"expired", s.SignToken(t, expired), "TOKEN_EXPIRED"},
				} {
					a := client{t, s, bad.token}.upload(r.base(s, c), c.ID, data, stack.UploadOptions{})
					if a.Status != http.StatusUnauthorized || a.Code() != bad.code {
						t.Errorf("%s token: %s, want 401 %s", bad.name, a, bad.code)
					}
				}
				stored(t, s, c)
			})

			t.Run("401 revoked token", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				tok := s.IssueToken(t, uploader.ID, stack.TokenOptions{})
				cl := client{t, s, tok.Token}
				accepted(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), data)
				s.RevokeToken(t, tok.ID)
				refused(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), 401, "TOKEN_REVOKED")
				stored(t, s, c, 1)
			})

			t.Run("403 without backupUploader", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				_, reader := s.Uploader(t, tenant, "backupDownloader")
				refused(t, client{t, s, reader.Token}.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), 403, "FORBIDDEN")
				stored(t, s, c)
			})

			t.Run("403 suspended tenant", func(t *testing.T) {
				t.Parallel()
				other := s.CreateTenant(t, nil)
				c := newColl(t, s, limits(other, 3, 64*kib, 192*kib))
				_, tok := s.Uploader(t, other, "backupUploader")
				cl := client{t, s, tok.Token}
				s.UpdateTenant(t, other, map[string]any{"suspended": true})
				refused(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), 403, "TENANT_SUSPENDED")
				stored(t, s, c)
				s.UpdateTenant(t, other, map[string]any{"suspended": false})
				accepted(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), data)
				stored(t, s, c, 1)
			})

			t.Run("403 window closed unless uploadsAnytime", func(t *testing.T) {
				t.Parallel()
				// Cron fields are UTC; a daily minute six hours away is closed now, the current
				// minute with ten minutes of duration is open.
				later, now := time.Now().UTC().Add(6*time.Hour), time.Now().UTC()
				closed := newColl(t, s, with(small, "windows", []map[string]any{
					{"from": fmt.Sprintf("%d %d * * *", later.Minute(), later.Hour()), "duration": "1m"}}))
				open := newColl(t, s, with(small, "windows", []map[string]any{
					{"from": fmt.Sprintf("%d %d * * *", now.Minute(), now.Hour()), "duration": "10m"}}))
				cl := client{t, s, up.Token}
				refused(t, cl.upload(r.base(s, closed), closed.ID, data, stack.UploadOptions{}), 403, "WINDOW_CLOSED")
				refused(t, cl.upload(r.base(s, closed), closed.ID, data, stack.UploadOptions{Chunked: true}), 403, "WINDOW_CLOSED")
				stored(t, s, closed)

				_, anytime := s.Uploader(t, tenant, "backupUploader", "uploadsAnytime")
				accepted(t, client{t, s, anytime.Token}.upload(r.base(s, closed), closed.ID, data, stack.UploadOptions{}), data)
				stored(t, s, closed, 1)
				accepted(t, cl.upload(r.base(s, open), open.ID, data, stack.UploadOptions{}), data)
				stored(t, s, open, 1)
			})

			t.Run("404 unknown or another tenant's collection", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				unknown := coll{ID: "no-such-collection-" + uuid.NewString()[:8], Node: c.Node}
				cl := client{t, s, up.Token}
				refused(t, cl.upload(r.base(s, unknown), unknown.ID, data, stack.UploadOptions{}), 404, "NOT_FOUND")
				stored(t, s, unknown)

				_, stranger := s.Uploader(t, s.CreateTenant(t, nil), "backupUploader", "backupDownloader", "tenantAdmin")
				refused(t, client{t, s, stranger.Token}.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), 404, "NOT_FOUND")
				refused(t, client{t, s, stranger.Token}.upload(r.base(s, c), c.ID, data, stack.UploadOptions{Chunked: true}), 404, "NOT_FOUND")
				stored(t, s, c)
			})

			t.Run("409 upload in progress", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				base := r.base(s, c)
				slow := payload(t, 40*kib)
				raw, err := s.OpenUpload(t.Context(), base, up.Token, c.ID, int64(len(slow)), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				if _, err := raw.Write(slow[:len(slow)/2]); err != nil {
					t.Fatal(err)
				}
				// The first upload holds the lock once its reservation exists.
				waitFor(t, "the first upload's reservation", func() bool { return s.LiveReservations(t, c.ID) == 1 })

				cl := client{t, s, up.Token}
				refused(t, cl.upload(base, c.ID, data, stack.UploadOptions{}), 409, "UPLOAD_IN_PROGRESS")
				refused(t, cl.upload(base, c.ID, data, stack.UploadOptions{Chunked: true}), 409, "UPLOAD_IN_PROGRESS")
				if n, rows := s.LiveReservations(t, c.ID), s.VersionRows(t, c.ID); n != 1 || len(rows) != 0 {
					t.Fatalf("during the first upload: %d reservations and %d versions, want 1 and 0", n, len(rows))
				}

				if _, err := raw.Write(slow[len(slow)/2:]); err != nil {
					t.Fatalf("send the rest of the first upload: %v", err)
				}
				a, err := raw.Answer(30 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				accepted(t, a, slow)
				stored(t, s, c, 1)
				accepted(t, cl.upload(base, c.ID, data, stack.UploadOptions{}), data)
				stored(t, s, c, 1, 2)
			})

			t.Run("409 collection full", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, with(limits(tenant, 2, 64*kib, 128*kib), "strategy", "REJECT_WHEN_FULL"))
				cl := client{t, s, up.Token}
				accepted(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), data)
				accepted(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{Chunked: true}), data)
				refused(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{}), 409, "COLLECTION_FULL")
				refused(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{Chunked: true}), 409, "COLLECTION_FULL")
				stored(t, s, c, 1, 2)
			})

			t.Run("413 by Content-Length before the body is read", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				// A body that never comes: the answer must not wait for it. A client that
				// announces it waits (Expect: 100-continue) must get the 413 instead of a 100.
				// Without Expect, only the data node answers at once: the front door waits for
				// the body (see the report), and for a body under 256 KiB Go's server reads the
				// rest of an unread body before it answers.
				headers := []http.Header{{"Expect": {"100-continue"}}}
				if r.name == "direct" {
					headers = append(headers, nil)
				}
				for _, h := range headers {
					raw, err := s.OpenUpload(t.Context(), r.base(s, c), up.Token, c.ID, 1*mib, h)
					if err != nil {
						t.Fatal(err)
					}
					a, err := raw.Answer(20 * time.Second)
					raw.Close()
					if err != nil {
						t.Fatalf("no answer without the body (headers %v): %v", h, err)
					}
					refused(t, a, 413, "VERSION_TOO_LARGE")
				}
				refused(t, client{t, s, up.Token}.upload(r.base(s, c), c.ID, payload(t, 64*kib+1), stack.UploadOptions{}), 413, "VERSION_TOO_LARGE")
				stored(t, s, c)
			})

			t.Run("413 by a chunked body", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				cl := client{t, s, up.Token}
				refused(t, cl.upload(r.base(s, c), c.ID, payload(t, 64*kib+1), stack.UploadOptions{Chunked: true}), 413, "VERSION_TOO_LARGE")
				refused(t, cl.upload(r.base(s, c), c.ID, payload(t, 1*mib), stack.UploadOptions{Chunked: true, Multipart: true}), 413, "VERSION_TOO_LARGE")
				stored(t, s, c)
				exact := payload(t, 64*kib)
				accepted(t, cl.upload(r.base(s, c), c.ID, exact, stack.UploadOptions{Chunked: true}), exact)
				stored(t, s, c, 1)
			})

			t.Run("400 not encrypted", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, with(small, "requireEncryption", true))
				cl := client{t, s, up.Token}
				plain := []byte("tar archive, not encrypted\n")
				refused(t, cl.upload(r.base(s, c), c.ID, plain, stack.UploadOptions{}), 400, "NOT_ENCRYPTED")
				refused(t, cl.upload(r.base(s, c), c.ID, plain, stack.UploadOptions{Chunked: true}), 400, "NOT_ENCRYPTED")
				refused(t, cl.upload(r.base(s, c), c.ID, plain, stack.UploadOptions{Multipart: true}), 400, "NOT_ENCRYPTED")
				// A literal data packet (tag 11) is OpenPGP but not encrypted.
				refused(t, cl.upload(r.base(s, c), c.ID, append([]byte{0xcb, 0x10}, data...), stack.UploadOptions{}), 400, "NOT_ENCRYPTED")
				stored(t, s, c)
				armoured := append([]byte("-----BEGIN PGP MESSAGE-----\n\n"), base64.StdEncoding.AppendEncode(nil, data)...)
				accepted(t, cl.upload(r.base(s, c), c.ID, armoured, stack.UploadOptions{}), armoured)
				binary := append([]byte{0xc1, 0x0c}, data...) // new-format PKESK packet header
				accepted(t, cl.upload(r.base(s, c), c.ID, binary, stack.UploadOptions{Chunked: true}), binary)
				stored(t, s, c, 1, 2)
			})

			t.Run("400 empty body", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				cl := client{t, s, up.Token}
				refused(t, cl.upload(r.base(s, c), c.ID, nil, stack.UploadOptions{}), 400, "EMPTY_BODY")
				refused(t, cl.upload(r.base(s, c), c.ID, []byte{}, stack.UploadOptions{Chunked: true}), 400, "EMPTY_BODY")
				refused(t, cl.upload(r.base(s, c), c.ID, []byte{}, stack.UploadOptions{Multipart: true}), 400, "EMPTY_BODY")
				stored(t, s, c)
			})

			t.Run("400 checksum mismatch", func(t *testing.T) {
				t.Parallel()
				c := newColl(t, s, small)
				cl := client{t, s, up.Token}
				wrong := sha256.Sum256([]byte("something else"))
				hexHeader := func(sum string) http.Header { return http.Header{"X-Content-Sha256": {sum}} }
				refused(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{Header: hexHeader(fmt.Sprintf("%x", wrong))}), 400, "CHECKSUM_MISMATCH")
				refused(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{Chunked: true, Header: hexHeader(fmt.Sprintf("%x", wrong))}), 400, "CHECKSUM_MISMATCH")
				refused(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{
					Header: http.Header{"Digest": {"sha-256=" + base64.StdEncoding.EncodeToString(wrong[:])}}}), 400, "CHECKSUM_MISMATCH")
				stored(t, s, c)
				right := sha256.Sum256(data)
				accepted(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{Header: hexHeader(sha(data))}), data)
				accepted(t, cl.upload(r.base(s, c), c.ID, data, stack.UploadOptions{
					Header: http.Header{"Digest": {"sha-256=" + base64.StdEncoding.EncodeToString(right[:])}}}), data)
				stored(t, s, c, 1, 2)
			})
		})
	}
}

// waitFor polls cond until it holds, failing the test after 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
