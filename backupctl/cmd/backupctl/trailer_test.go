package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestTrailerDigestIsVerified: the sha256 trailer backupctl sends for streams reaches the data
// node through the front door and is checked there; otherwise it would protect nothing.
func TestTrailerDigestIsVerified(t *testing.T) {
	t.Parallel()
	s := getStack(t)
	f := s.newTenant(t)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/stable/repository/collection/"+f.Collection+"/versions",
		io.MultiReader(strings.NewReader("some bytes")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.Token)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Content-Sha256": {strings.Repeat("0", 64)}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "CHECKSUM_MISMATCH") {
		t.Fatalf("wrong trailer digest: %s %s", resp.Status, body)
	}
}
