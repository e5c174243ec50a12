package uploads

import (
	"math"
	"time"

	"backuprepo/shared"
)

// Unlimited is the allowance of a collection without a size limit: only the node's room
// bounds its uploads.
const Unlimited = math.MaxInt64

// Allowance is SPEC §3 rule 6: how many bytes the next version of c may have, given the sizes
// of the versions that stay after this upload's rotation and the bytes reserved by other
// uploads in flight on c. With extra = maxCollectionSize - maxBackupsCount*maxOneVersionSize,
// a version may use maxOneVersionSize plus whatever part of extra the kept versions do not
// already borrow (each borrows max(size - maxOneVersionSize, 0)); and whatever the
// configuration history, the kept versions, the reservations and the new version together
// never exceed maxCollectionSize.
//
// limitCode names the limit that binds, for a body that goes over: VERSION_TOO_LARGE when it
// is maxOneVersionSize itself (no extra space left to borrow), COLLECTION_QUOTA_EXCEEDED when
// it is the collection's space. A collection without a size limit (maxCollectionSize 0) has an
// unbounded extra, so its allowance is Unlimited and limitCode is empty: the node's room is
// then the only limit.
func Allowance(c shared.Collection, kept []int64, reserved int64) (allowance int64, limitCode shared.Code) {
	if c.MaxCollectionSize <= 0 {
		return Unlimited, ""
	}
	one := c.MaxOneVersionSize
	extra := c.MaxCollectionSize - mulSat(int64(c.MaxBackupsCount), one)
	var used, borrowed int64
	for _, s := range kept {
		used += s
		if s > one {
			borrowed += s - one
		}
	}
	byRule := one + extra - borrowed
	bySpace := c.MaxCollectionSize - used - reserved
	allowance = max(min(byRule, bySpace), 0)
	if byRule == one && bySpace >= one {
		return allowance, shared.CodeVersionTooLarge
	}
	return allowance, shared.CodeCollectionQuotaExceeded
}

// mulSat multiplies non-negative numbers, saturating at MaxInt64.
func mulSat(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// Rotation returns the ids of the versions that a new upload to c rotates out, given the
// collection's versions oldest first. FIFO keeps the newest maxBackupsCount versions counting
// the new one. FIFO_PLUS_OLDER also keeps, of the versions FIFO would delete, the newest
// maxOlderCopies that are not older than keepOlderNotMoreThan at now. REJECT_WHEN_FULL never
// rotates (admission refuses a full collection instead).
func Rotation(c shared.Collection, existing []shared.Version, now time.Time) []string {
	if c.Strategy == shared.StrategyRejectWhenFull {
		return nil
	}
	keep := max(c.MaxBackupsCount-1, 0) // of the existing versions; the new one takes a slot
	n := len(existing) - keep           // FIFO's candidates are existing[:n]
	if n <= 0 {
		return nil
	}
	spared := map[int]bool{}
	if c.Strategy == shared.StrategyFIFOPlusOlder {
		for i := n - 1; i >= 0 && len(spared) < c.MaxOlderCopies; i-- {
			if now.Sub(existing[i].CreatedAt) <= c.KeepOlderNotMoreThan {
				spared[i] = true
			}
		}
	}
	out := make([]string, 0, n-len(spared))
	for i := range n {
		if !spared[i] {
			out = append(out, existing[i].ID)
		}
	}
	return out
}

// Kept returns the versions that stay when the ids in rotate go, in their order.
func Kept(existing []shared.Version, rotate []string) []shared.Version {
	gone := make(map[string]bool, len(rotate))
	for _, id := range rotate {
		gone[id] = true
	}
	out := make([]shared.Version, 0, len(existing))
	for _, v := range existing {
		if !gone[v.ID] {
			out = append(out, v)
		}
	}
	return out
}

// Fit returns the ids of the oldest kept versions that must also go so that the kept versions
// and a new version of size fit in maxCollectionSize. The allowance fixed at admission makes
// this empty; it is not when versions were deleted by hand during the upload and the rotation
// computed at commit therefore keeps an older, larger version that admission had counted out.
// The invariant of rule 6 wins over keeping that version.
func Fit(c shared.Collection, kept []shared.Version, size int64) []string {
	if c.MaxCollectionSize <= 0 {
		return nil
	}
	total := size
	for _, v := range kept {
		total += v.Size
	}
	var out []string
	for i := 0; i < len(kept) && total > c.MaxCollectionSize; i++ {
		out = append(out, kept[i].ID)
		total -= kept[i].Size
	}
	return out
}

// sizes returns the sizes of vs.
func sizes(vs []shared.Version) []int64 {
	out := make([]int64, len(vs))
	for i, v := range vs {
		out[i] = v.Size
	}
	return out
}
