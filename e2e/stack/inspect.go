package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Files lists the regular files on the node's disks, as paths relative to their disk
// directory ("collections/<id>/<versionID>"), sorted. A block-checksum sidecar
// (".<versionID>.sums", ".staged-<id>.sums") is left out while the file it belongs to exists:
// it comes and goes with that file. A sidecar without its file is listed.
func (n *Node) Files(t testing.TB) []string {
	t.Helper()
	all := n.allFiles(t)
	present := make(map[string]bool, len(all))
	for _, f := range all {
		present[f] = true
	}
	out := all[:0:0]
	for _, f := range all {
		dir, base := filepath.Split(f)
		if owner, ok := strings.CutSuffix(base, ".sums"); ok && !strings.HasPrefix(owner, ".tmp-") {
			if !strings.HasPrefix(owner, ".staged-") {
				owner = strings.TrimPrefix(owner, ".")
			}
			if present[dir+owner] {
				continue
			}
		}
		out = append(out, f)
	}
	return out
}

// allFiles lists every regular file on the node's disks, sorted.
func (n *Node) allFiles(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, d := range n.Disks {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !e.IsDir() {
				rel, _ := filepath.Rel(d, p)
				out = append(out, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("list disk %s of %s: %v", d, n.Name, err)
		}
	}
	slices.Sort(out)
	return out
}

// CollectionFiles lists the names of the files in the collection's directory on every disk of
// the node, sorted; committed versions are named by their version id.
func (n *Node) CollectionFiles(t testing.TB, collectionID string) []string {
	t.Helper()
	var out []string
	prefix := filepath.Join("collections", collectionID) + string(filepath.Separator)
	for _, f := range n.Files(t) {
		if rest, ok := strings.CutPrefix(f, prefix); ok {
			out = append(out, rest)
		}
	}
	return out
}

// CollectionFileSizes maps the names of the files in the collection's directory to their
// sizes, to watch an upload in progress (its .tmp-* file) grow.
func (n *Node) CollectionFileSizes(t testing.TB, collectionID string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, d := range n.Disks {
		dir := filepath.Join(d, "collections", collectionID)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // not on this disk (yet)
		}
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				out[e.Name()] = fi.Size()
			}
		}
	}
	return out
}

// Leftovers lists the temporary (.tmp-*) and staged (.staged-*) files on the node's disks:
// after any finished upload there must be none.
func (n *Node) Leftovers(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, f := range n.Files(t) {
		base := filepath.Base(f)
		if strings.HasPrefix(base, ".tmp-") || strings.HasPrefix(base, ".staged-") {
			out = append(out, f)
		}
	}
	return out
}

// FileSHA256 hashes the stored file of a version; "" when it does not exist.
func (n *Node) FileSHA256(t testing.TB, collectionID, versionID string) string {
	t.Helper()
	for _, d := range n.Disks {
		f, err := os.Open(filepath.Join(d, "collections", collectionID, versionID))
		if err != nil {
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatalf("read stored version %s: %v", versionID, err)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	return ""
}

// VersionRow is a row of the versions table.
type VersionRow struct {
	ID       string
	Number   int64
	Filename string
	Size     int64
	SHA256   string
	NodeName string
}

// VersionRows returns the collection's rows in the versions table, oldest first.
func (s *Stack) VersionRows(t testing.TB, collectionID string) []VersionRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	rows, err := s.DB.Query(ctx, `SELECT id::text, number, filename, size, sha256, node_name
		FROM versions WHERE collection_id = $1 ORDER BY number`, collectionID)
	if err != nil {
		t.Fatalf("query versions: %v", err)
	}
	defer rows.Close()
	var out []VersionRow
	for rows.Next() {
		var v VersionRow
		if err := rows.Scan(&v.ID, &v.Number, &v.Filename, &v.Size, &v.SHA256, &v.NodeName); err != nil {
			t.Fatalf("scan versions: %v", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read versions: %v", err)
	}
	return out
}

// LiveReservations counts the collection's upload reservations that have not expired.
func (s *Stack) LiveReservations(t testing.TB, collectionID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout)
	defer cancel()
	var n int
	err := s.DB.QueryRow(ctx, `SELECT count(*) FROM upload_reservations
		WHERE collection_id = $1 AND expires_at > now()`, collectionID).Scan(&n)
	if err != nil {
		t.Fatalf("count reservations: %v", err)
	}
	return n
}

// Numbers are the version numbers of rows, in order.
func Numbers(rows []VersionRow) []int64 {
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = r.Number
	}
	return out
}

// IDs are the sorted version ids of rows: what a collection's directory must hold.
func IDs(rows []VersionRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	slices.Sort(out)
	return out
}
