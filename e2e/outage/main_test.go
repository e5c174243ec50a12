package outage

import (
	"os"
	"testing"

	"backuprepo/e2e/stack"
)

// bins are the product binaries, built once in TestMain.
var bins stack.Binaries

func TestMain(m *testing.M) { os.Exit(stack.RunTests(m, &bins, true)) }
