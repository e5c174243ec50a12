package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"backuprepo/datanode/admission"
	"backuprepo/datanode/disk"
	"backuprepo/shared/config"
	"backuprepo/shared/internalapi"
	"backuprepo/shared/size"
)

// Exit codes of `datanode verify`, beside 2 for bad configuration.
const (
	verifyClean   = 0 // every stored version matches its record
	verifyFailed  = 1 // the scan could not be completed (a disk or the control plane failed)
	verifyProblem = 3 // damaged, unreadable, missing or unknown files were found
)

// verifySettings is what `datanode verify` needs: the same BR_ variables as the node, so an
// operator runs it with the node's environment file.
type verifySettings struct {
	NodeName        string
	Disks           []string
	ControlPlaneURL string
	NodeSecret      []byte
	Progress        time.Duration
}

func parseVerifySettings(args, environ []string, stderr io.Writer) (verifySettings, error) {
	var s verifySettings
	fs := flag.NewFlagSet("datanode verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: datanode verify [flags]

Reads every stored version on this node's disks, computes its sha256 and has the control plane
compare it with its record. Damaged, unreadable and missing versions are printed, recorded by the
control plane and shown in GraphQL (Collection.integrity). Changes nothing on the disks, so it
may run while the node serves. Exit status: 0 all good, 3 problems found, 1 the scan failed,
2 bad configuration.

`)
		fs.PrintDefaults()
	}
	fs.StringVar(&s.NodeName, "node-name", "", "this node's unique name in the cluster (required)")
	disks := fs.String("disks", "", "comma-separated data directories, one per disk (required)")
	fs.StringVar(&s.ControlPlaneURL, "controlplane-url", "", "URL of the control plane's internal API (required)")
	secret := fs.String("node-secret", "", "secret shared with the control plane, at least 16 bytes (required)")
	fs.DurationVar(&s.Progress, "progress", 10*time.Second, "how often to print progress (0: never)")
	if err := config.Parse(fs, args, environ); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("config: unexpected argument %q", fs.Arg(0))
	}
	for name, v := range map[string]string{"node-name": s.NodeName, "disks": *disks,
		"controlplane-url": s.ControlPlaneURL, "node-secret": *secret} {
		if strings.TrimSpace(v) == "" {
			return s, config.Invalid(name, "is required")
		}
	}
	s.Disks = config.List(*disks)
	for _, d := range s.Disks {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return s, config.Invalid("disks", fmt.Sprintf("names %q, which is not an existing directory", d))
		}
	}
	if len(*secret) < 16 {
		return s, config.Invalid("node-secret", "must be at least 16 bytes")
	}
	s.NodeSecret = []byte(*secret)
	if s.Progress < 0 {
		return s, config.Invalid("progress", "must not be negative")
	}
	return s, nil
}

// runVerify is `datanode verify`; it returns the exit code.
func runVerify(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	s, err := parseVerifySettings(args, environ, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return verifyClean
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	store, err := disk.Open(ctx, disk.Config{Dirs: s.Disks, ReadOnly: true})
	if err != nil {
		fmt.Fprintf(stderr, "verify: open disks: %v\n", err)
		return verifyFailed
	}
	cp, err := admission.New(admission.Config{ControlPlaneURL: s.ControlPlaneURL, NodeName: s.NodeName, Secret: s.NodeSecret})
	if err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return verifyFailed
	}
	v := &verifier{cp: cp, out: stdout, progressEvery: s.Progress, started: time.Now(), scanID: uuid.NewString()}
	if err := v.run(ctx, store); err != nil {
		fmt.Fprintf(stderr, "verify: %v\n", err)
		return verifyFailed
	}
	if v.damaged+v.missing+v.unknown > 0 {
		return verifyProblem
	}
	return verifyClean
}

// verifier sends what the store reads to the control plane in batches and keeps the tally.
type verifier struct {
	cp            *admission.Client
	out           io.Writer
	progressEvery time.Duration
	started       time.Time
	scanID        string
	lastProgress  time.Time

	batch                               []internalapi.IntegrityCheck
	files, bytes                        int64
	verified, damaged, missing, unknown int
}

func (v *verifier) run(ctx context.Context, store *disk.Store) error {
	v.lastProgress = v.started
	var sendErr error
	err := store.Verify(ctx, func(collectionID, versionID string, n int64, sum string, err error) {
		if sendErr != nil {
			return
		}
		c := internalapi.IntegrityCheck{CollectionID: collectionID, VersionID: versionID, Size: n, SHA256: sum}
		if err != nil {
			c.SHA256, c.Problem = "", "read: "+err.Error()
		}
		v.batch = append(v.batch, c)
		v.files++
		v.bytes += n
		if len(v.batch) == internalapi.MaxIntegrityChecks {
			sendErr = v.send(ctx, false)
		}
		if v.progressEvery > 0 && time.Since(v.lastProgress) >= v.progressEvery {
			v.lastProgress = time.Now()
			fmt.Fprintf(v.out, "verify: %d files, %s read in %s\n", v.files, size.Format(v.bytes),
				time.Since(v.started).Round(time.Second))
		}
	})
	if err == nil {
		err = sendErr
	}
	if err != nil {
		return err
	}
	// The last report says the scan was complete, so that what it did not find is missing.
	if err := v.send(ctx, true); err != nil {
		return err
	}
	fmt.Fprintf(v.out, "verify: %d files, %s in %s: %d match their records, %d damaged or unreadable, %d missing, %d unknown\n",
		v.files, size.Format(v.bytes), time.Since(v.started).Round(time.Millisecond), v.verified, v.damaged, v.missing, v.unknown)
	return nil
}

func (v *verifier) send(ctx context.Context, complete bool) error {
	report := internalapi.IntegrityReport{ScanID: v.scanID, Checks: v.batch, Complete: complete}
	if complete {
		report.ScanAge = time.Since(v.started) // monotonic: no clock is compared across hosts
	}
	if report.Checks == nil {
		report.Checks = []internalapi.IntegrityCheck{}
	}
	res, err := v.cp.Integrity(ctx, report)
	if err != nil {
		return fmt.Errorf("report to the control plane: %w", err)
	}
	v.verified += res.Verified
	v.damaged += len(res.Problems)
	v.missing += res.Missing
	v.unknown += len(res.Unknown)
	for _, u := range res.Unknown {
		fmt.Fprintf(v.out, "unknown file: collection %s, %s (no version records it; left in place)\n", u.CollectionID, u.VersionID)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(v.out, "%s: collection %s, version %s: %s\n", p.Kind, p.CollectionID, p.VersionID, p.Detail)
	}
	if res.Missing > 0 {
		fmt.Fprintf(v.out, "missing: %d versions recorded on this node were not found on its disks; GraphQL lists them (Collection.integrity)\n", res.Missing)
	}
	v.batch = v.batch[:0]
	return nil
}
