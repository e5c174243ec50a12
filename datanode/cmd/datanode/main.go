// Command datanode stores backup versions on local disks, serves the collection endpoints
// directly and to the control plane's front door, and announces its capacity over gossip.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"backuprepo/datanode/admission"
	"backuprepo/datanode/cleanup"
	"backuprepo/datanode/disk"
	"backuprepo/datanode/httpapi"
	"backuprepo/shared/pacing"
)

// version is the software version announced over gossip; release builds set it with
// -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "verify" {
		os.Exit(runVerify(ctx, os.Args[2:], os.Environ(), os.Stdout, os.Stderr))
	}
	os.Exit(run(ctx, os.Args[1:], os.Environ(), os.Stderr))
}

// run returns the exit code: 0 after a clean shutdown, 1 when the node fails, 2 for bad
// configuration (one line naming the setting).
func run(ctx context.Context, args, environ []string, stderr io.Writer) int {
	s, err := parseSettings(args, environ, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: s.LogLevel})).With("node", s.NodeName)
	m := &Main{settings: s, log: logger}
	if err := m.Run(ctx); err != nil {
		logger.Error("data node stopped", "err", err)
		return 1
	}
	logger.Info("data node stopped")
	return 0
}

// Main is the data node's wiring: it owns every component and their start-up and shutdown
// order.
type Main struct {
	settings settings
	log      *slog.Logger
}

// Run starts the node and blocks until ctx ends (SIGINT/SIGTERM) or a component fails, then
// shuts down gracefully.
func (m *Main) Run(ctx context.Context) error {
	s := m.settings
	// 1. The store removes temporary files left by a crash before anything else happens.
	store, err := disk.Open(ctx, disk.Config{Dirs: s.Disks, Reserve: s.Reserve, Logger: m.log.With("component", "disk")})
	if err != nil {
		return fmt.Errorf("open disks: %w", err)
	}
	cp, err := admission.New(admission.Config{ControlPlaneURL: s.ControlPlaneURL, NodeName: s.NodeName, Secret: s.NodeSecret})
	if err != nil {
		return err
	}

	// 2. Uploads staged but not committed when the node stopped: settle what can be settled
	// now; the rest waits for the control plane in the background (staged files are never
	// served, so nothing depends on them).
	rec := httpapi.NewReconciler(httpapi.ReconcilerConfig{Store: store, ControlPlane: cp, Logger: m.log.With("component", "reconcile")})
	if rec.Len() > 0 {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		left := rec.Once(rctx)
		cancel()
		m.log.Info("staged uploads reconciled at start", "unsettled", left)
	}
	// Nothing of this node is in flight yet: uploads it lost in a crash must not keep their
	// collections locked until their lease runs out. Staged uploads still unsettled keep
	// theirs (their outcome is asked again later); without the control plane, the leases
	// expire by themselves.
	if rec.Len() == 0 {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if n, err := cp.AbortAll(actx); err != nil {
			m.log.Warn("could not abort the uploads lost before this start; their leases will expire", "err", err)
		} else if n > 0 {
			m.log.Info("aborted uploads lost before this start", "uploads", n)
		}
		cancel()
	}
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	go rec.Run(bg, 30*time.Second)
	go cleanup.New(store, cp, m.log.With("component", "cleanup")).Run(bg, s.CleanupInterval)

	handler, err := httpapi.New(httpapi.Config{
		Store:           store,
		ControlPlane:    cp,
		Reconciler:      rec,
		Keys:            s.VerifyKeys,
		NodeSecret:      s.NodeSecret,
		HealthCheckCode: s.HealthCheckCode,
		Logger:          m.log.With("component", "http"),
		BodyIdleTimeout: s.BodyIdleTimeout,
	})
	if err != nil {
		return err
	}
	// Bind before announcing, so that the control plane never routes to a closed port;
	// connections queue in the backlog until Serve accepts them.
	ln, err := pacing.Listen(s.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.Listen, err)
	}

	// 3. Join the cluster and keep the announced capacity fresh.
	cluster, err := joinCluster(bg, s, store, m.log.With("component", "gossip"))
	if err != nil {
		ln.Close()
		return err
	}

	// 4. Serve. No ReadTimeout or WriteTimeout: uploads and downloads of large backups take as
	// long as they take; the upload handler moves an idle deadline forward as data arrives
	// and ReadHeaderTimeout stops trickled headers.
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(m.log.With("component", "http-server").Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	m.log.Info("data node serving", "listen", ln.Addr().String(), "public_url", s.PublicURL,
		"disks", s.Disks, "version", version)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}

	// 5. Shutdown: fail readiness, leave the cluster so no new work is routed here, then let
	// in-flight transfers finish within the grace period.
	handler.Stopping()
	m.log.Info("shutting down", "grace", s.ShutdownGrace)
	cluster.leave()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		m.log.Warn("transfers still running at the end of the grace period were cut", "err", err)
		_ = srv.Close()
	}
	stopBackground()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve HTTP: %w", serveErr)
	}
	return nil
}
