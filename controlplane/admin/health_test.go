package admin_test

import (
	"testing"
	"time"

	"backuprepo/controlplane/admin"
	"backuprepo/shared"
)

func TestComputeHealth(t *testing.T) {
	t.Parallel()
	day := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	nightly := []shared.Window{{From: "0 2 * * *", Duration: 2 * time.Hour}} // 02:00-04:00 UTC
	base := shared.Collection{MaxBackupsCount: 3, MaxOneVersionSize: 10, MaxCollectionSize: 30}
	v := func(size int64, created time.Time) shared.Version {
		return shared.Version{Number: 1, Size: size, CreatedAt: created}
	}
	cases := []struct {
		name                   string
		windows                []shared.Window
		versions               []shared.Version
		now                    time.Time
		window, soft, hard, ok bool
	}{
		{"no windows, empty", nil, nil, at(5), true, true, true, true},
		{"backup inside the closed window", nightly, []shared.Version{v(5, at(3))}, at(5), true, true, true, true},
		{"backup before the window", nightly, []shared.Version{v(5, at(1))}, at(5), false, true, true, false},
		{"backup after the window", nightly, []shared.Version{v(5, at(4))}, at(5), false, true, true, false},
		{"no backup at all", nightly, nil, at(5), false, true, true, false},
		{"window open, backup in the previous one", nightly, []shared.Version{v(5, at(3-24))}, at(3), true, true, true, true},
		{"window open, previous one missed", nightly, []shared.Version{v(5, at(5-24))}, at(3), false, true, true, false},
		{"version above soft limit", nil, []shared.Version{v(11, at(1)), v(5, at(0))}, at(5), true, false, true, false},
		{"versions above hard limit", nil, []shared.Version{v(10, at(2)), v(10, at(1)), v(11, at(0))}, at(5), true, false, false, false},
	}
	for _, c := range cases {
		col := base
		col.Windows = c.windows
		h := admin.ComputeHealth(col, c.versions, c.now)
		if h.WindowCompliance != c.window || h.SoftLimitOK != c.soft || h.HardLimitOK != c.hard || h.Healthy != c.ok {
			t.Errorf("%s: got window %v soft %v hard %v healthy %v (%v)", c.name, h.WindowCompliance, h.SoftLimitOK, h.HardLimitOK, h.Healthy, h.Messages)
		}
		if (len(c.versions) > 0) != (h.NewestVersionAge != nil) {
			t.Errorf("%s: newest version age %v", c.name, h.NewestVersionAge)
		}
		if !h.Healthy && len(h.Messages) == 0 {
			t.Errorf("%s: unhealthy without a message", c.name)
		}
	}
	unlimited := base
	unlimited.MaxCollectionSize = 0
	if h := admin.ComputeHealth(unlimited, []shared.Version{v(10, at(1)), v(10, at(1)), v(10, at(1)), v(10, at(1))}, at(5)); !h.HardLimitOK {
		t.Errorf("unlimited collection fails the hard limit")
	}
}
