// Package upload holds the end-to-end tests of the upload path (SPEC §3 and §4.1) against
// real control plane and data node processes.
package upload

import (
	"context"
	"fmt"
	"os"
	"testing"

	"backuprepo/e2e/stack"
)

// bins are the product binaries, built once for every test of the package in TestMain.
var bins stack.Binaries

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("TEST_DATABASE_URL") != "" && os.Getenv("TEST_REDIS_URL") != "" {
		dir, err := os.MkdirTemp("", "e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if bins, err = stack.Build(context.Background(), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}
