// Package upload holds the end-to-end tests of the upload path (SPEC §3 and §4.1) against
// real control plane and data node processes.
package upload

import (
	"os"
	"testing"

	"backuprepo/e2e/stack"
)

// bins are the product binaries, built once for every test of the package in TestMain.
var bins stack.Binaries

func TestMain(m *testing.M) { os.Exit(stack.RunTests(m, &bins, true)) }
