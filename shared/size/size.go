// Package size parses and prints byte sizes with units ("500MiB", "4GB") for quotas and
// collection limits entered by people.
package size

import (
	"math"
	"math/big"
	"strconv"
	"strings"

	"backuprepo/shared"
)

// maxInput bounds the text we parse so that the exact rational arithmetic stays cheap.
const maxInput = 64

// units maps every accepted unit (compared case-insensitively) to its multiplier.
// Decimal units are powers of 1000, binary units powers of 1024, as in IEC 80000-13.
var units = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1e3,
	"mb":  1e6,
	"gb":  1e9,
	"tb":  1e12,
	"pb":  1e15,
	"eb":  1e18,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
	"pib": 1 << 50,
	"eib": 1 << 60,
}

const unitList = "B, KB, MB, GB, TB, PB, EB, KiB, MiB, GiB, TiB, PiB, EiB"

// Parse reads a byte count: plain digits ("1024") or a number with a unit ("1.5GiB",
// "500 MB"); units are case-insensitive. Decimals are allowed with a unit above bytes and
// the result is rounded down to whole bytes. Negative, empty, overflowing or otherwise
// malformed input gives a *shared.Error with code INVALID_INPUT.
func Parse(s string) (int64, error) {
	if len(s) > maxInput {
		return 0, invalid(s[:maxInput]+"…", "too long")
	}
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, invalid(s, "empty")
	}
	end := 0
	dots := 0
	for end < len(t) && (isDigit(t[end]) || t[end] == '.') {
		if t[end] == '.' {
			dots++
		}
		end++
	}
	num, unit := t[:end], strings.TrimSpace(t[end:])
	if num == "" {
		if t[0] == '-' {
			return 0, invalid(s, "negative sizes are not allowed")
		}
		return 0, invalid(s, "want a number with an optional unit ("+unitList+")")
	}
	if dots > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, invalid(s, "malformed number")
	}
	mult, ok := units[strings.ToLower(unit)]
	if !ok {
		return 0, invalid(s, "unknown unit "+strconv.Quote(unit)+" (want one of "+unitList+")")
	}
	if dots == 0 {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, invalid(s, "larger than the maximum of "+strconv.FormatInt(math.MaxInt64, 10)+" bytes")
		}
		return n * mult, nil
	}
	if mult == 1 {
		return 0, invalid(s, "a byte count must be a whole number")
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, invalid(s, "malformed number")
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() {
		return 0, invalid(s, "larger than the maximum of "+strconv.FormatInt(math.MaxInt64, 10)+" bytes")
	}
	return n.Int64(), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func invalid(s, why string) *shared.Error {
	return shared.Errorf(shared.CodeInvalidInput, "invalid size %q: %s", s, why)
}

var binaryUnits = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

// Format prints n in the largest binary unit that keeps the number at least 1, with at most
// two decimals ("1.5 GiB", "512 B"). It is meant for people; Parse reads it back to within
// half a percent.
func Format(n int64) string {
	if n < 0 {
		// Negative sizes only show up in differences; format the magnitude.
		return "-" + formatAbs(-float64(n), uint64(-(n+1))+1)
	}
	return formatAbs(float64(n), uint64(n))
}

func formatAbs(f float64, u uint64) string {
	if u < 1024 {
		return strconv.FormatUint(u, 10) + " B"
	}
	i := 0
	for i < len(binaryUnits)-1 && f >= 1024 {
		f /= 1024
		i++
	}
	// Rounding to two decimals may reach 1024 ("1023.999 KiB"); move up a unit then.
	if math.Round(f*100) >= 1024*100 && i < len(binaryUnits)-1 {
		f /= 1024
		i++
	}
	txt := strconv.FormatFloat(f, 'f', 2, 64)
	txt = strings.TrimRight(strings.TrimRight(txt, "0"), ".")
	return txt + " " + binaryUnits[i]
}
