package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestOperationsGuideListsEveryFlag keeps docs/operations.md true to the binaries: each
// binary's configuration table lists exactly its flags, and no BR_* name anywhere in the
// guide is made up.
func TestOperationsGuideListsEveryFlag(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	cp, dn := settingNames(t, bins.ControlPlane), settingNames(t, bins.DataNode)
	for _, c := range []struct {
		heading string
		flags   map[string]bool
	}{{"### Control plane", cp}, {"### Data node", dn}} {
		start := strings.Index(guide, c.heading)
		if start < 0 {
			t.Fatalf("no %q section", c.heading)
		}
		section := guide[start+len(c.heading):]
		if end := regexp.MustCompile(`\n#{2,3} `).FindStringIndex(section); end != nil {
			section = section[:end[0]]
		}
		listed := map[string]bool{}
		for _, m := range regexp.MustCompile("(?m)^\\| ((?:`BR_[A-Z0-9_]+`(?:, )?)+) \\|").FindAllStringSubmatch(section, -1) {
			for _, name := range regexp.MustCompile(`BR_[A-Z0-9_]+`).FindAllString(m[1], -1) {
				listed[name] = true
			}
		}
		for name := range c.flags {
			if !listed[name] {
				t.Errorf("%s: the table does not list %s", c.heading, name)
			}
		}
		for name := range listed {
			if !c.flags[name] {
				t.Errorf("%s: the table lists %s, which is not a flag", c.heading, name)
			}
		}
	}
	for _, name := range regexp.MustCompile(`BR_[A-Z0-9_]+`).FindAllString(guide, -1) {
		if !cp[name] && !dn[name] {
			t.Errorf("the guide mentions %s, which is a flag of neither binary", name)
		}
	}
}
