package graph

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/vektah/gqlparser/v2/formatter"
)

var update = flag.Bool("update", false, "rewrite testdata/schema.graphql from the schema")

// TestSchemaGolden pins the public SDL: a change to the API shows up as a diff of
// testdata/schema.graphql in review. Run `go test -run TestSchemaGolden -update` after an
// intended change.
func TestSchemaGolden(t *testing.T) {
	var buf bytes.Buffer
	formatter.NewFormatter(&buf, formatter.WithIndent("  ")).FormatSchema(NewExecutableSchema(Config{}).Schema())
	golden := filepath.Join("testdata", "schema.graphql")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("schema differs from %s; run `go test -run TestSchemaGolden -update` if the change is intended:\n%s", golden, buf.String())
	}
}
