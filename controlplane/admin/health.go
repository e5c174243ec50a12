package admin

import (
	"fmt"
	"time"

	"backuprepo/shared"
	"backuprepo/shared/window"
)

// ComputeHealth judges a collection from its versions (newest first) at now:
//   - window compliance: the newest version was made inside the latest window. While that
//     window is still open, a backup made in it or in the window before counts, so a
//     collection does not turn unhealthy at every window's opening. No windows, or none fired
//     yet, complies.
//   - soft limit: no version is larger than maxOneVersionSize.
//   - hard limit: the versions together fit maxCollectionSize (0 = unlimited).
func ComputeHealth(c shared.Collection, versions []shared.Version, now time.Time) shared.CollectionHealth {
	h := shared.CollectionHealth{WindowCompliance: true, SoftLimitOK: true, HardLimitOK: true, Messages: []string{}}
	var newest *shared.Version
	if len(versions) > 0 {
		newest = &versions[0]
		for i := range versions {
			if versions[i].CreatedAt.After(newest.CreatedAt) {
				newest = &versions[i]
			}
		}
		age := now.Sub(newest.CreatedAt)
		h.NewestVersionAge = &age
	}
	if start, end, ok := window.Latest(c.Windows, now); ok {
		inside := func(s, e time.Time) bool {
			return newest != nil && !newest.CreatedAt.Before(s) && newest.CreatedAt.Before(e)
		}
		if now.Before(end) {
			h.WindowCompliance = inside(start, end)
			if !h.WindowCompliance {
				ps, pe, ok := window.Latest(c.Windows, start.Add(-time.Second))
				h.WindowCompliance = !ok || inside(ps, pe)
			}
		} else {
			h.WindowCompliance = inside(start, end)
		}
		if !h.WindowCompliance {
			h.Messages = append(h.Messages, fmt.Sprintf("no backup was made in the latest backup window (%s to %s)",
				start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339)))
		}
	}
	var total int64
	for _, v := range versions {
		total += v.Size
		if v.Size > c.MaxOneVersionSize && h.SoftLimitOK {
			h.SoftLimitOK = false
			h.Messages = append(h.Messages, fmt.Sprintf("version %d is %d bytes, above maxOneVersionSize %d", v.Number, v.Size, c.MaxOneVersionSize))
		}
	}
	if c.MaxCollectionSize > 0 && total > c.MaxCollectionSize {
		h.HardLimitOK = false
		h.Messages = append(h.Messages, fmt.Sprintf("the versions take %d bytes, above maxCollectionSize %d", total, c.MaxCollectionSize))
	}
	h.Healthy = h.WindowCompliance && h.SoftLimitOK && h.HardLimitOK
	return h
}
