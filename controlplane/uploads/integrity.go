package uploads

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"backuprepo/controlplane/admin"
	"backuprepo/controlplane/postgres"
	"backuprepo/shared"
	"backuprepo/shared/internalapi"
)

const (
	// maxIntegrityBody bounds an integrity report: a full batch of checks, each with a problem
	// text of a few KB, fits.
	maxIntegrityBody = 4 << 20
	// maxProblemLength bounds the problem text kept per check; a longer one is cut, not refused,
	// so that a verbose read error cannot make a scan's report fail.
	maxProblemLength = 1000
	// commitRace is how long before a scan began a version must have been created to be
	// expected on the node: a commit racing the scan is not missing.
	commitRace = time.Minute
	// maxScanAge bounds how long a scan may run: a month reads hundreds of terabytes.
	maxScanAge = 30 * 24 * time.Hour
)

// Integrity records what the calling node found when it read its stored versions (a `datanode
// verify` scan, or a download that failed its checksum). A node speaks only for its own files:
// checks of versions held by another node, or by another collection than the check names, are
// ignored and counted neither way. Checks of files without a version row come back as Unknown.
func (s *Service) Integrity(ctx context.Context, node string, rep internalapi.IntegrityReport) (internalapi.IntegrityResponse, error) {
	now := s.now()
	ids, err := validateReport(rep, now)
	if err != nil {
		return internalapi.IntegrityResponse{}, err
	}
	var resp internalapi.IntegrityResponse
	judge := func(stored map[string]postgres.StoredVersion) []postgres.VersionCheck {
		resp = internalapi.IntegrityResponse{Unknown: []internalapi.FileRef{}, Problems: []internalapi.IntegrityProblem{}}
		out := make([]postgres.VersionCheck, 0, len(rep.Checks))
		for i, c := range rep.Checks {
			row, ok := stored[ids[i]]
			switch {
			case !ok:
				resp.Unknown = append(resp.Unknown, internalapi.FileRef{CollectionID: c.CollectionID, VersionID: c.VersionID})
			case row.NodeName != node || row.CollectionID != c.CollectionID:
				// Not this node's file by the record: what it holds there proves nothing.
			default:
				vc := judgeCheck(c, row)
				if vc.OK {
					resp.Verified++
				} else {
					resp.Problems = append(resp.Problems, internalapi.IntegrityProblem{CollectionID: c.CollectionID,
						VersionID: vc.VersionID, Kind: vc.Kind, Detail: vc.Detail})
				}
				out = append(out, vc)
			}
		}
		return out
	}
	var scan *postgres.MissingScan
	if rep.Complete {
		scan = &postgres.MissingScan{
			ScanID:     rep.ScanID,
			CreatedAgo: rep.ScanAge + commitRace,
			Detail: fmt.Sprintf("not found by the scan of every disk of the node (scan %s, which began %s before it reported)",
				rep.ScanID, rep.ScanAge.Round(time.Second)),
		}
	}
	resp.Missing, err = s.db.RecordIntegrity(ctx, node, rep.ScanID, ids, judge, scan)
	if err != nil {
		return internalapi.IntegrityResponse{}, dbError(err)
	}
	if len(resp.Problems) > 0 || resp.Missing > 0 {
		s.log.WarnContext(ctx, "data node reported stored versions that fail their checks", "node", node,
			"damaged", len(resp.Problems), "missing", resp.Missing, "verified", resp.Verified)
	}
	return resp, nil
}

// validateReport refuses a malformed report as a whole and returns the canonical version id of
// every check.
func validateReport(rep internalapi.IntegrityReport, now time.Time) ([]string, error) {
	if len(rep.Checks) > internalapi.MaxIntegrityChecks {
		return nil, shared.Errorf(shared.CodeInvalidInput, "at most %d checks per report, got %d",
			internalapi.MaxIntegrityChecks, len(rep.Checks))
	}
	if rep.ScanID != "" {
		if id, err := uuid.Parse(rep.ScanID); err != nil || len(rep.ScanID) != 36 || id.String() != rep.ScanID {
			return nil, shared.Errorf(shared.CodeInvalidInput, "scanId must be a lowercase UUID")
		}
	}
	if rep.Complete && (rep.ScanID == "" || rep.ScanAge <= 0) {
		return nil, shared.Errorf(shared.CodeInvalidInput, "a complete report needs scanId and a positive scanAge")
	}
	if rep.ScanAge < 0 || rep.ScanAge > maxScanAge {
		return nil, shared.Errorf(shared.CodeInvalidInput, "scanAge must be between 0 and %s", maxScanAge)
	}
	ids := make([]string, len(rep.Checks))
	seen := make(map[string]bool, len(rep.Checks))
	for i, c := range rep.Checks {
		id, err := uuid.Parse(c.VersionID)
		switch {
		case !admin.CollectionIDPattern.MatchString(c.CollectionID):
			return nil, shared.Errorf(shared.CodeInvalidInput, "checks[%d]: collectionId is not a collection id", i)
		case err != nil || len(c.VersionID) != 36:
			return nil, shared.Errorf(shared.CodeInvalidInput, "checks[%d]: versionId must be a UUID", i)
		case c.SHA256 != "" && !sha256Pattern.MatchString(c.SHA256):
			return nil, shared.Errorf(shared.CodeInvalidInput, "checks[%d]: sha256 must be 64 lowercase hex digits or empty", i)
		case c.SHA256 == "" && c.Problem == "":
			return nil, shared.Errorf(shared.CodeInvalidInput, "checks[%d]: a check without sha256 must say its problem", i)
		case c.Size < 0:
			return nil, shared.Errorf(shared.CodeInvalidInput, "checks[%d]: size must not be negative", i)
		case seen[id.String()]:
			return nil, shared.Errorf(shared.CodeInvalidInput, "checks[%d]: version %s is checked twice", i, c.VersionID)
		}
		ids[i] = id.String()
		seen[ids[i]] = true
	}
	return ids, nil
}

// judgeCheck compares a check with its version row.
func judgeCheck(c internalapi.IntegrityCheck, row postgres.StoredVersion) postgres.VersionCheck {
	vc := postgres.VersionCheck{VersionID: row.ID}
	switch {
	case c.Problem != "":
		vc.Kind, vc.Detail = postgres.CheckUnreadable, problemText(c.Problem)
	case c.Size != row.Size:
		vc.Kind, vc.Detail = postgres.CheckDamaged, fmt.Sprintf("the file holds %d bytes; %d were uploaded", c.Size, row.Size)
	case c.SHA256 != row.SHA256:
		vc.Kind, vc.Detail = postgres.CheckDamaged, "the file's SHA-256 differs from the uploaded one"
	default:
		vc.OK = true
		return vc
	}
	size := c.Size
	vc.FoundSize, vc.FoundSHA256 = &size, c.SHA256
	return vc
}

// problemText is the node's problem text as stored: without NUL bytes (PostgreSQL text cannot
// hold them) and cut to maxProblemLength bytes on a character boundary.
func problemText(p string) string {
	p = strings.ReplaceAll(p, "\x00", "")
	if len(p) <= maxProblemLength {
		return p
	}
	cut := maxProblemLength
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return p[:cut] + "…"
}
