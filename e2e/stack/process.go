package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"backuprepo/shared/localserver"
)

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL: beyond the 2 s the
// stacks give a data node's in-flight uploads (BR_SHUTDOWN_GRACE), with room for a busy
// machine.
const stopGrace = 10 * time.Second

// Process is one product process: its binary, environment and log file stay the same across
// restarts, so a restarted node finds its disks and its cluster again.
type Process struct {
	Name    string
	LogPath string // stdout and stderr of every run, appended
	livez   string // URL answering 200 once the process serves

	bin string
	env []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	err  error         // the current run's exit status, valid after done
}

// NewProcess describes a process (it does not start it): bin runs with exactly env, appends its
// output to logPath, and serves once livez answers 200.
func NewProcess(name, bin, logPath, livez string, env []string) *Process {
	return &Process{Name: name, LogPath: logPath, livez: livez, bin: bin, env: env}
}

// Start launches the process; it does not wait for it to serve (see WaitLive).
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.Name)
		}
	}
	log, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", p.Name, err)
	}
	cmd := exec.Command(p.bin)
	cmd.Env = append([]string(nil), p.env...)
	cmd.Stdout = log
	cmd.Stderr = log
	// Its own process group, so that a Ctrl-C on `go test` does not hit it before cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Process) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// Setenv changes one setting ("BR_RESERVE", …) for the next start or restart.
func (p *Process) Setenv(key, value string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	env := make([]string, 0, len(p.env)+1)
	for _, kv := range p.env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			env = append(env, kv)
		}
	}
	p.env = append(env, key+"="+value)
}

// Running reports whether the process is alive.
func (p *Process) Running() bool {
	cmd, done := p.current()
	if cmd == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// PID is the operating-system id of the current run, 0 when never started.
func (p *Process) PID() int {
	cmd, _ := p.current()
	if cmd == nil || cmd.Process == nil {
		return 0
	}
	return cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to be gone: a crash.
func (p *Process) Kill() error {
	cmd, done := p.current()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	return nil
}

// Stop sends SIGTERM, waits up to a few seconds for a clean exit, then sends SIGKILL. It
// returns an error when the process had to be killed or exited with a failure status.
func (p *Process) Stop() error {
	cmd, done := p.current()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopGrace):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, stopGrace)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("%s exited: %w", p.Name, p.err)
	}
	return nil
}

// Restart stops the process (SIGTERM) if it runs, starts it again with the same
// configuration and waits until it serves. A stop that needed SIGKILL or exited with a
// failure is reported, but the process is started again all the same.
func (p *Process) Restart(ctx context.Context) error {
	stopErr := p.Stop()
	if err := p.Start(); err != nil {
		return errors.Join(stopErr, err)
	}
	return errors.Join(stopErr, p.WaitLive(ctx))
}

// WaitLive polls the process's /livez until it answers 200, the process exits or ctx ends.
func (p *Process) WaitLive(ctx context.Context) error {
	_, done := p.current()
	err := localserver.WaitOK(ctx, p.livez, done)
	if errors.Is(err, localserver.ErrExited) {
		return fmt.Errorf("%s exited before serving:\n%s", p.Name, p.Tail(20))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	return nil
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n == 0 {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}
