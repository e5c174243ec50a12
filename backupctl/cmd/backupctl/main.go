// Command backupctl is the Backup Repository client: it encrypts backups on the machine that
// makes them, streams them to the repository, restores and verifies them, and administers
// tenants, collections, tokens and data nodes over the GraphQL API.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"backuprepo/backupctl/client"
	"backuprepo/backupctl/progress"
	"backuprepo/shared"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	configDir, err := os.UserConfigDir()
	if err != nil {
		configDir = "" // login then says where it could not save; env vars still work
	}
	code := run(ctx, &app{
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		getenv:    os.Getenv,
		configDir: configDir,
		stderrTTY: progress.IsTerminal(os.Stderr),
		readPassword: func() ([]byte, bool, error) {
			if !term.IsTerminal(int(os.Stdin.Fd())) {
				return nil, false, nil
			}
			fmt.Fprint(os.Stderr, "Password: ")
			p, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(os.Stderr)
			return p, true, err
		},
		now: time.Now,
	}, os.Args[1:])
	stop()
	os.Exit(code)
}

// app is everything a command touches outside its arguments, so tests run commands in-process
// with their own environment, config directory and streams.
type app struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
	configDir string // os.UserConfigDir(); "" when there is none
	stderrTTY bool
	// readPassword reads a password from the terminal without echo; ok is false when stdin
	// is not a terminal (the password is then the first line of stdin).
	readPassword func() (p []byte, ok bool, err error)
	now          func() time.Time
}

type command struct {
	summary string
	usage   string // after "backupctl "
	about   string
	example string
	run     func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"login":       loginCommand,
		"whoami":      whoamiCommand,
		"keygen":      keygenCommand,
		"backup":      backupCommand,
		"restore":     restoreCommand,
		"upload":      uploadCommand,
		"download":    downloadCommand,
		"versions":    versionsCommand,
		"collections": collectionsCommand,
		"collection":  collectionCommand,
		"token":       tokenCommand,
		"tenants":     tenantsCommand,
		"users":       usersCommand,
		"nodes":       nodesCommand,
	}
}

// exitUsage is the exit status for a command line that cannot be run.
const exitUsage = 2

func run(ctx context.Context, a *app, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			args = []string{args[1], "--help"}
		} else {
			a.usage(cmds)
			if len(args) == 0 {
				return exitUsage
			}
			return 0
		}
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(a.stderr, "backupctl: unknown command %q\n\n", args[0])
		a.usage(cmds)
		return exitUsage
	}
	fs := flag.NewFlagSet("backupctl "+args[0], flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: backupctl %s\n\n%s\n", c.usage, c.about)
		if hasFlags(fs) {
			fmt.Fprintf(a.stderr, "\nFlags:\n")
			fs.PrintDefaults()
		}
		fmt.Fprintf(a.stderr, "\nExamples:\n%s\n", c.example)
	}
	err := c.run(ctx, a, fs, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(a.stderr, "backupctl %s: %v\n(see backupctl %s --help)\n", args[0], err, args[0])
		return exitUsage
	}
	fmt.Fprintf(a.stderr, "backupctl %s: %s\n", args[0], describe(err))
	return 1
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func (a *app) usage(cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(a.stderr, "backupctl: encrypted backups to a Backup Repository, and its administration.\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(a.stderr, "  %-12s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(a.stderr, `
Run "backupctl COMMAND --help" for a command's flags and examples.

Environment:
  BACKUPCTL_URL      the repository's URL (overrides the one saved by login)
  BACKUPCTL_TOKEN    the bearer token to use (overrides the one saved by login)
  BACKUPCTL_BACKOFF  first pause between retries (default 1s)
`)
}

// describe renders an error for people: the server's message and its machine code.
func describe(err error) string {
	var e *shared.Error
	if errors.As(err, &e) {
		return e.Message + " (" + string(e.Code) + ")"
	}
	return err.Error()
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// parse parses flags wherever they stand among the positional arguments, which the flag
// package alone stops at ("collection delete ID --force").
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// config is what login saves.
type config struct {
	URL    string    `json:"url"`
	Email  string    `json:"email,omitempty"`
	Token  string    `json:"token"`
	Expire time.Time `json:"expire"`
}

func (a *app) configPath() (string, error) {
	if a.configDir == "" {
		return "", errors.New("no user config directory (set HOME or XDG_CONFIG_HOME, or use BACKUPCTL_URL and BACKUPCTL_TOKEN)")
	}
	return filepath.Join(a.configDir, "backupctl", "config.json"), nil
}

func (a *app) loadConfig() (config, error) {
	var c config
	p, err := a.configPath()
	if err != nil {
		return c, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("config %s is damaged (log in again): %w", p, err)
	}
	return c, nil
}

// saveConfig writes the token readable by the user only, replacing the file atomically.
func (a *app) saveConfig(c config) (string, error) {
	p, err := a.configPath()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("create config directory: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode config: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".config-*")
	if err != nil {
		return "", fmt.Errorf("save config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("save config: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return "", fmt.Errorf("save config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("save config: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("save config: %w", err)
	}
	return p, nil
}

// client builds an API client from BACKUPCTL_URL / BACKUPCTL_TOKEN or the saved login.
func (a *app) client() (*client.Client, error) {
	c, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	url, tok := c.URL, c.Token
	if v := a.getenv("BACKUPCTL_URL"); v != "" {
		url = v
	}
	if v := a.getenv("BACKUPCTL_TOKEN"); v != "" {
		tok = v
	}
	if url == "" || tok == "" {
		return nil, shared.Errorf(shared.CodeUnauthenticated, "not logged in: run backupctl login, or set BACKUPCTL_URL and BACKUPCTL_TOKEN")
	}
	return a.newClient(url, tok)
}

func (a *app) newClient(url, tok string) (*client.Client, error) {
	backoff := time.Second
	if v := a.getenv("BACKUPCTL_BACKOFF"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, usagef("BACKUPCTL_BACKOFF=%q is not a positive duration such as 2s", v)
		}
		backoff = d
	}
	return client.New(url, tok, client.Options{
		Backoff: backoff,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			fmt.Fprintf(a.stderr, "backupctl: %s; retry %d in %s\n", describe(err), attempt, wait.Round(time.Millisecond))
		},
	})
}

// printJSON writes v indented, for scripts.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// meter starts a progress report on stderr unless quiet.
func (a *app) meter(quiet bool, label string, total int64) *progress.Meter {
	if quiet {
		return nil
	}
	return progress.Start(a.stderr, label, total, progress.Options{Terminal: a.stderrTTY, Now: a.now})
}

// loginCommand saves a token for the other commands.
var loginCommand = command{
	summary: "log in with an email and password and save the token",
	usage:   "login [--url URL] [--email EMAIL] [--json]",
	about: `Asks for the password without echoing it (or reads the first line of standard input when
it is not a terminal) and saves the token with mode 0600 in the user's config directory
(` + "`backupctl/config.json`" + `). BACKUPCTL_URL and BACKUPCTL_TOKEN override the saved values.`,
	example: `  backupctl login --url https://backups.example.org --email admin@example.org
  printf '%s\n' "$PASSWORD" | backupctl login --url http://127.0.0.1:8080 --email admin@example.org`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		url := fs.String("url", "", "the repository's URL (default: BACKUPCTL_URL or the saved one)")
		email := fs.String("email", "", "the account's email (asked when missing)")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		if _, err := parse(fs, args); err != nil {
			return err
		}
		saved, err := a.loadConfig()
		if err != nil {
			return err
		}
		for _, v := range []string{*url, a.getenv("BACKUPCTL_URL"), saved.URL} {
			if *url == "" {
				*url = v
			}
		}
		if *url == "" {
			return usagef("--url is required (or BACKUPCTL_URL)")
		}
		var lines *lineReader
		if *email == "" {
			fmt.Fprint(a.stderr, "Email: ")
			lines = &lineReader{r: a.stdin}
			if *email, err = lines.line(); err != nil {
				return fmt.Errorf("read email: %w", err)
			}
		}
		password, err := a.password(lines)
		if err != nil {
			return err
		}
		c, err := a.newClient(*url, "")
		if err != nil {
			return err
		}
		s, err := c.Login(ctx, *email, password)
		if err != nil {
			return err
		}
		path, err := a.saveConfig(config{URL: c.BaseURL(), Email: *email, Token: s.Token, Expire: s.Expire})
		if err != nil {
			return err
		}
		if *asJSON {
			return a.printJSON(map[string]any{"url": c.BaseURL(), "email": *email, "sessionId": s.SessionID, "expire": s.Expire, "configFile": path})
		}
		fmt.Fprintf(a.stdout, "Logged in to %s as %s; token saved in %s (expires %s).\n", c.BaseURL(), *email, path, s.Expire.Local().Format(time.DateTime))
		return nil
	},
}

func (a *app) password(lines *lineReader) (string, error) {
	p, ok, err := a.readPassword()
	if ok {
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(p), nil
	}
	if lines == nil {
		lines = &lineReader{r: a.stdin}
	}
	s, err := lines.line()
	if err != nil {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	return s, nil
}

// lineReader reads lines one byte at a time, so nothing after the line is consumed.
type lineReader struct{ r io.Reader }

func (l *lineReader) line() (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := l.r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return strings.TrimSuffix(b.String(), "\r"), nil
			}
			b.WriteByte(buf[0])
		}
		if err == io.EOF && b.Len() > 0 {
			return b.String(), nil
		}
		if err != nil {
			return "", err
		}
	}
}
