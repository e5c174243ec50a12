package uploads

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"backuprepo/shared"
)

func limits(maxColl int64, count int, one int64) shared.Collection {
	return shared.Collection{ID: "c", MaxCollectionSize: maxColl, MaxBackupsCount: count, MaxOneVersionSize: one,
		Strategy: shared.StrategyFIFO}
}

func TestAllowance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		c        shared.Collection
		kept     []int64
		reserved int64
		want     int64
		code     shared.Code
	}{
		{"max 100, 3 x 30, extra 10, empty: 30 + 10 = 40, bound by the extra space",
			limits(100, 3, 30), nil, 0, 40, shared.CodeCollectionQuotaExceeded},
		{"max 100, 3 x 30, kept 25+25 borrow nothing: 30 + 10 = 40",
			limits(100, 3, 30), []int64{25, 25}, 0, 40, shared.CodeCollectionQuotaExceeded},
		{"max 100, 3 x 30, kept 40 borrows 10 of the extra 10: 30 + 10 - 10 = 30",
			limits(100, 3, 30), []int64{40, 30}, 0, 30, shared.CodeVersionTooLarge},
		{"max 100, 3 x 30, kept 35 borrows 5: 30 + 10 - 5 = 35",
			limits(100, 3, 30), []int64{35, 10}, 0, 35, shared.CodeCollectionQuotaExceeded},
		{"max 90, 3 x 30, no extra: 30",
			limits(90, 3, 30), []int64{30, 30}, 0, 30, shared.CodeVersionTooLarge},
		{"max 100, 3 x 30, kept 30+30 and 35 reserved: 100 - 60 - 35 = 5",
			limits(100, 3, 30), []int64{30, 30}, 35, 5, shared.CodeCollectionQuotaExceeded},
		{"max 100, 3 x 30, two kept older copies (4 kept): 100 - 4 x 20 = 20",
			limits(100, 3, 30), []int64{20, 20, 20, 20}, 0, 20, shared.CodeCollectionQuotaExceeded},
		{"max 100, 3 x 30, limits lowered under 60+50: never negative",
			limits(100, 3, 30), []int64{60, 50}, 0, 0, shared.CodeCollectionQuotaExceeded},
		{"max 1 GiB, 4 x 200 MiB, extra 224 MiB, kept 300 MiB borrows 100 MiB: 200 + 224 - 100 = 324 MiB",
			limits(1<<30, 4, 200<<20), []int64{300 << 20, 100 << 20}, 0, 324 << 20, shared.CodeCollectionQuotaExceeded},
		{"unlimited collection: only the node's room limits", limits(0, 3, 30), []int64{1000}, 0, Unlimited, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, code := Allowance(tt.c, tt.kept, tt.reserved)
			if got != tt.want || code != tt.code {
				t.Fatalf("Allowance = %d, %s; want %d, %s", got, code, tt.want, tt.code)
			}
		})
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// history returns versions v1..vN created ages ago (oldest first), each of size 10.
func history(ages ...time.Duration) []shared.Version {
	out := make([]shared.Version, len(ages))
	for i, a := range ages {
		out[i] = shared.Version{ID: fmt.Sprintf("v%d", i+1), Number: int64(i + 1), Size: 10, CreatedAt: t0.Add(-a)}
	}
	return out
}

func TestRotation(t *testing.T) {
	t.Parallel()
	h := time.Hour
	fifo := func(count int) shared.Collection {
		return shared.Collection{Strategy: shared.StrategyFIFO, MaxBackupsCount: count}
	}
	older := func(count, copies int, keep time.Duration) shared.Collection {
		return shared.Collection{Strategy: shared.StrategyFIFOPlusOlder, MaxBackupsCount: count, MaxOlderCopies: copies,
			KeepOlderNotMoreThan: keep}
	}
	tests := []struct {
		name     string
		c        shared.Collection
		existing []shared.Version
		want     []string
	}{
		{"FIFO 3, 2 stored: room for the third", fifo(3), history(2*h, h), nil},
		{"FIFO 3, 3 stored: the oldest goes", fifo(3), history(3*h, 2*h, h), []string{"v1"}},
		{"FIFO 3, 5 stored after the count was lowered: 3 go", fifo(3), history(5*h, 4*h, 3*h, 2*h, h), []string{"v1", "v2", "v3"}},
		{"FIFO 1: every stored version goes", fifo(1), history(2*h, h), []string{"v1", "v2"}},
		{"REJECT_WHEN_FULL never rotates", shared.Collection{Strategy: shared.StrategyRejectWhenFull, MaxBackupsCount: 2},
			history(2*h, h), nil},
		{"FIFO_PLUS_OLDER 2+1 within 48h: v2 (24h) is kept as an older copy, v1 (72h) goes",
			older(2, 1, 48*h), history(72*h, 24*h, h), []string{"v1"}},
		{"FIFO_PLUS_OLDER 2+2 within 48h: v1 is 72h old, too old to keep",
			older(2, 2, 48*h), history(72*h, 24*h, h), []string{"v1"}},
		{"FIFO_PLUS_OLDER 2+1, all young: only the newest candidate is kept",
			older(2, 1, 48*h), history(10*h, 5*h, h), []string{"v1"}},
		{"FIFO_PLUS_OLDER 2+2, all young: both candidates kept",
			older(2, 2, 48*h), history(10*h, 5*h, h), []string{}},
		{"FIFO_PLUS_OLDER exactly keepOlderNotMoreThan old is not older: kept",
			older(1, 1, 48*h), history(48 * h), []string{}},
		{"FIFO_PLUS_OLDER a second past the limit goes",
			older(1, 1, 48*h), history(48*h + time.Second), []string{"v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Rotation(tt.c, tt.existing, t0)
			if len(got) != len(tt.want) || (len(got) > 0 && !slices.Equal(got, tt.want)) {
				t.Fatalf("Rotation = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFit(t *testing.T) {
	t.Parallel()
	kept := []shared.Version{{ID: "a", Size: 50}, {ID: "b", Size: 40}}
	tests := []struct {
		name string
		max  int64
		size int64
		want []string
	}{
		{"50 + 40 + 10 = 100 fits in 100", 100, 10, nil},
		{"50 + 40 + 30 = 120 over 100: the oldest (50) goes", 100, 30, []string{"a"}},
		{"50 + 40 + 70 = 160 over 100: both go", 100, 70, []string{"a", "b"}},
		{"unlimited", 0, 1 << 40, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Fit(shared.Collection{MaxCollectionSize: tt.max}, kept, tt.size)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Fit = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAllowanceInvariant drives random collections through random sequences of uploads (each
// admitted with Allowance and committed with a fresh Rotation and Fit, as the service does),
// hand deletions during uploads and the passing of time, and checks after every commit that
// the kept versions never sum above maxCollectionSize, that without hand deletions no version
// borrows extra space another kept version already uses, and that the version count holds.
func TestAllowanceInvariant(t *testing.T) {
	t.Parallel()
	strategies := []shared.Strategy{shared.StrategyFIFO, shared.StrategyFIFOPlusOlder, shared.StrategyRejectWhenFull}
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		count := 1 + rng.IntN(6)
		one := int64(1 + rng.IntN(100))
		c := shared.Collection{ID: "c", MaxBackupsCount: count, MaxOneVersionSize: one,
			MaxCollectionSize: one*int64(count) + int64(rng.IntN(200)), Strategy: strategies[rng.IntN(3)],
			MaxOlderCopies: 1 + rng.IntN(3), KeepOlderNotMoreThan: time.Duration(1+rng.IntN(10)) * time.Hour}
		deletes := seed%2 == 0
		extra := c.MaxCollectionSize - int64(count)*one
		now := t0
		var versions []shared.Version
		for step := range 60 {
			now = now.Add(time.Duration(rng.IntN(180)) * time.Minute)
			if c.Strategy == shared.StrategyRejectWhenFull && len(versions) >= count {
				versions = versions[1:] // a manager makes room, as admission would require
			}
			kept := Kept(versions, Rotation(c, versions, now))
			allowance, _ := Allowance(c, sizes(kept), 0)
			var size int64
			switch rng.IntN(3) {
			case 0:
				size = allowance
			case 1:
				size = rng.Int64N(allowance + 1)
			default:
				size = min(allowance, one)
			}
			if deletes && len(versions) > 0 && rng.IntN(3) == 0 {
				i := rng.IntN(len(versions)) // deleted by hand while the upload streams
				versions = slices.Delete(slices.Clone(versions), i, i+1)
			}
			now = now.Add(time.Duration(rng.IntN(30)) * time.Minute)
			rotate := Rotation(c, versions, now)
			if fit := Fit(c, Kept(versions, rotate), size); len(fit) > 0 {
				if !deletes {
					// Without hand deletions the allowance alone must keep the invariant.
					t.Fatalf("seed %d step %d: %+v: allowance %d let %d bytes in over the limit", seed, step, c, allowance, size)
				}
				rotate = append(rotate, fit...)
			}
			versions = append(Kept(versions, rotate), shared.Version{ID: fmt.Sprintf("n%d", step),
				Number: int64(step + 1), Size: size, CreatedAt: now})

			var total, borrowed int64
			for _, v := range versions {
				total += v.Size
				borrowed += max(v.Size-one, 0)
			}
			if total > c.MaxCollectionSize {
				t.Fatalf("seed %d step %d: %+v keeps %d bytes, above %d", seed, step, c, total, c.MaxCollectionSize)
			}
			if !deletes && borrowed > extra {
				t.Fatalf("seed %d step %d: kept versions borrow %d, extra is %d", seed, step, borrowed, extra)
			}
			limit := count
			if c.Strategy == shared.StrategyFIFOPlusOlder {
				limit += c.MaxOlderCopies
			}
			if len(versions) > limit {
				t.Fatalf("seed %d step %d: %d versions kept, limit %d", seed, step, len(versions), limit)
			}
		}
	}
}
