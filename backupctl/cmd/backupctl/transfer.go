package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"

	"backuprepo/backupctl/client"
	"backuprepo/backupctl/crypt"
	"backuprepo/backupctl/progress"
	"backuprepo/shared"
)

var keygenCommand = command{
	summary: "write a new OpenPGP key pair for encrypting backups",
	usage:   "keygen [--name NAME] [--email EMAIL] KEY.asc",
	about: `Writes the public key to KEY.asc (give it to every machine that makes backups) and the
private key to KEY.key.asc with mode 0600 (keep it off those machines, somewhere safe: without it
no backup can be restored). Existing files are never overwritten.`,
	example: `  backupctl keygen --name "Food Bank backups" --email it@foodbank.example.org foodbank.asc
  # then: backupctl backup --recipient foodbank.asc ...; backupctl restore --private-key foodbank.key.asc ...`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		name := fs.String("name", "backupctl", "the key's name")
		email := fs.String("email", "", "the key's email")
		asJSON := fs.Bool("json", false, "print the result as JSON")
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usagef("want one KEY.asc file name")
		}
		pub := pos[0]
		if !strings.HasSuffix(pub, ".asc") {
			pub += ".asc"
		}
		priv := strings.TrimSuffix(pub, ".asc") + ".key.asc"
		kp, err := crypt.GenerateKey(*name, *email, a.now())
		if err != nil {
			return err
		}
		if err := writeNew(priv, kp.Private, 0o600); err != nil {
			return err
		}
		if err := writeNew(pub, kp.Public, 0o644); err != nil {
			os.Remove(priv)
			return err
		}
		keys, err := crypt.ReadKeys(strings.NewReader(string(kp.Public)))
		if err != nil {
			return err
		}
		fp := fmt.Sprintf("%X", keys[0].PrimaryKey.Fingerprint)
		if *asJSON {
			return a.printJSON(map[string]string{"publicKey": pub, "privateKey": priv, "fingerprint": fp})
		}
		fmt.Fprintf(a.stdout, "Public key:  %s (encrypt backups with it)\nPrivate key: %s (mode 0600; keep it safe, restores need it)\nFingerprint: %s\n", pub, priv, fp)
		return nil
	},
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

func readKeyFile(path string) (openpgp.EntityList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	keys, err := crypt.ReadKeys(f)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return keys, nil
}

var backupCommand = command{
	summary: "encrypt and upload a backup (a file, standard input or a command's output)",
	usage:   "backup --collection ID --recipient KEY.asc [--cmd \"SHELL COMMAND\" | FILE | -] [--json]",
	about: `Encrypts on this machine with OpenPGP for the recipient's public key (the repository never
sees the plaintext) and streams the ciphertext to the repository without temporary files. The
sha256 of what was sent goes along as an HTTP trailer, so the server verifies it. A FILE is
retried on 503 and connection errors; standard input and --cmd cannot be replayed and are not.
If --cmd exits non-zero the upload is cut off and nothing is stored.`,
	example: `  backupctl backup --collection web-backups --recipient foodbank.asc --cmd "tar -cz -C / etc var/www"
  backupctl backup --collection db-backups --recipient foodbank.asc /var/backups/db.sql.gz
  pg_dump mydb | gzip | backupctl backup --collection db-backups --recipient foodbank.asc -`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		coll := fs.String("collection", "", "the collection's id (required)")
		recipient := fs.String("recipient", "", "public key file to encrypt for (required)")
		shell := fs.String("cmd", "", "back up this shell command's standard output (run with sh -c)")
		armour := fs.Bool("armor", false, "send an ASCII-armoured OpenPGP message instead of binary")
		quiet := fs.Bool("quiet", false, "show no progress")
		asJSON := fs.Bool("json", false, "print the stored version as JSON")
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if *coll == "" || *recipient == "" {
			return usagef("--collection and --recipient are required")
		}
		if (*shell != "") == (len(pos) == 1) || len(pos) > 1 {
			return usagef("give exactly one of --cmd, FILE or - (standard input)")
		}
		keys, err := readKeyFile(*recipient)
		if err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		var (
			body  = client.Body{Size: -1}
			total = int64(-1)
		)
		m := a.meter(*quiet, "backup", -1)
		wrap := func(r io.Reader) io.Reader {
			if m == nil {
				return r
			}
			m.Set(0)
			return m.Reader(r)
		}
		switch {
		case *shell != "":
			body.Open = func() (io.ReadCloser, error) {
				cmd := exec.CommandContext(ctx, "sh", "-c", *shell)
				cmd.Stderr = a.stderr
				out, err := cmd.StdoutPipe()
				if err != nil {
					return nil, fmt.Errorf("run --cmd: %w", err)
				}
				if err := cmd.Start(); err != nil {
					return nil, fmt.Errorf("run --cmd: %w", err)
				}
				return encrypting(wrap(out), keys, *armour, a, cmd, *shell), nil
			}
		case pos[0] == "-":
			body.Open = func() (io.ReadCloser, error) {
				return encrypting(wrap(a.stdin), keys, *armour, a, nil, ""), nil
			}
		default:
			fi, err := os.Stat(pos[0])
			if err != nil {
				return fmt.Errorf("back up file: %w", err)
			}
			if !fi.Mode().IsRegular() {
				return usagef("%s is not a regular file", pos[0])
			}
			total = fi.Size()
			body.Replayable = true
			body.Open = func() (io.ReadCloser, error) {
				f, err := os.Open(pos[0])
				if err != nil {
					return nil, fmt.Errorf("back up file: %w", err)
				}
				return closeBoth{encrypting(wrap(f), keys, *armour, a, nil, ""), f}, nil
			}
		}
		if m != nil {
			m.SetTotal(total)
		}
		v, err := c.Upload(ctx, *coll, body)
		if m != nil {
			m.Finish(err == nil)
		}
		if err != nil {
			return err
		}
		return a.printVersion(v, *asJSON)
	},
}

func (a *app) printVersion(v client.Version, asJSON bool) error {
	if asJSON {
		return a.printJSON(v)
	}
	fmt.Fprintf(a.stdout, "Stored version %d of collection %s: %s, %s, sha256 %s\n",
		v.Number, v.CollectionID, v.Filename, progress.Bytes(v.Size), v.SHA256)
	return nil
}

// closeBoth closes the encrypted stream and then the file under it.
type closeBoth struct {
	io.ReadCloser
	f *os.File
}

func (c closeBoth) Close() error {
	err := c.ReadCloser.Close()
	c.f.Close()
	return err
}

// encrypting returns the OpenPGP ciphertext of src as it is read. When src is a command's
// output, the message is finished only if the command exits zero; otherwise the stream ends
// in an error, which cuts the upload off before its last chunk so the server keeps nothing.
func encrypting(src io.Reader, keys openpgp.EntityList, armour bool, a *app, cmd *exec.Cmd, shell string) io.ReadCloser {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc, err := crypt.Encrypt(pw, keys, armour, a.now())
		if err == nil {
			_, err = io.Copy(enc, src)
		}
		if cmd != nil {
			if err != nil {
				_ = cmd.Process.Kill()
			}
			if werr := cmd.Wait(); err == nil && werr != nil {
				err = fmt.Errorf("--cmd %q failed (%v); the upload was cut off and nothing was stored", shell, werr)
			}
		}
		if err == nil {
			err = enc.Close()
		}
		pw.CloseWithError(err)
	}()
	return &encryptedStream{PipeReader: pr, cmd: cmd, done: done}
}

type encryptedStream struct {
	*io.PipeReader
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Close stops the producer: a command is killed so that its output pipe ends.
func (e *encryptedStream) Close() error {
	e.once.Do(func() {
		e.PipeReader.CloseWithError(errors.New("upload ended"))
		if e.cmd != nil {
			select {
			case <-e.done:
			default:
				_ = e.cmd.Process.Kill()
				<-e.done
			}
		}
	})
	return nil
}

var restoreCommand = command{
	summary: "download, verify and decrypt a backup into a file, standard output or a command",
	usage:   "restore --collection ID [--version latest|vN|ID] --private-key KEY.key.asc (-o FILE | -o - | --cmd \"SHELL COMMAND\")",
	about: `Downloads with progress, resuming an interrupted transfer with Range requests, checks the
sha256 against the repository's ETag and decrypts. Tampered or damaged data (a checksum mismatch
or an OpenPGP integrity failure) exits non-zero: -o FILE is written to FILE.partial and renamed
only when everything checked out, so no half-written FILE is ever left. With --cmd the command
is killed on such a failure (it may have written part of its output by then).`,
	example: `  backupctl restore --collection web-backups --private-key foodbank.key.asc --cmd "tar -xz -C /restore"
  backupctl restore --collection db-backups --version v12 --private-key foodbank.key.asc -o db.sql.gz`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		coll := fs.String("collection", "", "the collection's id (required)")
		ref := fs.String("version", "latest", "which version: latest, first, vN, N or a version id")
		keyFile := fs.String("private-key", "", "the private key file (required)")
		shell := fs.String("cmd", "", "pipe the plaintext into this shell command (run with sh -c)")
		out := fs.String("o", "", "write the plaintext to this file (- for standard output)")
		quiet := fs.Bool("quiet", false, "show no progress")
		asJSON := fs.Bool("json", false, "print what was restored as JSON")
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if *coll == "" || *keyFile == "" {
			return usagef("--collection and --private-key are required")
		}
		if len(pos) > 0 || (*shell != "") == (*out != "") {
			return usagef("give exactly one of -o FILE, -o - or --cmd")
		}
		if *asJSON && *out == "-" {
			return usagef("--json cannot share standard output with -o -")
		}
		keys, err := readKeyFile(*keyFile)
		if err != nil {
			return err
		}
		if len(keys.DecryptionKeys()) == 0 {
			return shared.Errorf(shared.CodeInvalidInput, "%s holds no private key (is it the public KEY.asc?)", *keyFile)
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		sink, err := a.openSink(ctx, *out, *shell)
		if err != nil {
			return err
		}
		m := a.meter(*quiet, "restore", -1)
		d, err := restoreInto(ctx, c, *coll, *ref, keys, sink, m)
		if m != nil {
			m.Finish(err == nil)
		}
		if err != nil {
			sink.abort()
			return err
		}
		if err := sink.commit(); err != nil {
			return err
		}
		return a.printDownload(d, *coll, *ref, *out, *asJSON)
	},
}

// restoreInto streams download → decryption → sink. Bytes reach the sink before the end of
// the message is verified, which is why sinks are committed only afterwards.
func restoreInto(ctx context.Context, c *client.Client, coll, ref string, keys openpgp.EntityList, sink io.Writer, m *progress.Meter) (client.Download, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	type result struct {
		d   client.Download
		err error
	}
	done := make(chan result, 1)
	go func() {
		var w io.Writer = pw
		if m != nil {
			w = meterWriter{pw, m}
		}
		d, err := c.Download(ctx, coll, ref, w, func(d client.Download) {
			if m != nil {
				m.SetTotal(d.Size)
			}
		})
		pw.CloseWithError(err)
		done <- result{d, err}
	}()
	err := func() error {
		plain, err := crypt.Decrypt(pr, keys)
		if err != nil {
			return err
		}
		if _, err := io.Copy(sink, plain); err != nil {
			return err
		}
		// The OpenPGP message may end before the download does, and the download's own check
		// against the ETag comes at its very end: wait for it.
		_, err = io.Copy(io.Discard, pr)
		return err
	}()
	if err != nil {
		cancel()
		pr.CloseWithError(err)
	}
	r := <-done
	if r.err != nil && !errors.Is(r.err, context.Canceled) && !errors.Is(r.err, io.ErrClosedPipe) {
		// The download's verdict (a refusal, a checksum mismatch) explains more than the
		// decryption error it caused.
		return r.d, r.err
	}
	return r.d, err
}

type meterWriter struct {
	w io.Writer
	m *progress.Meter
}

func (mw meterWriter) Write(p []byte) (int, error) {
	n, err := mw.w.Write(p)
	mw.m.Add(int64(n))
	return n, err
}

// sink is where restored or downloaded bytes go; nothing is final before commit.
type sink interface {
	io.Writer
	commit() error
	abort()
}

func (a *app) openSink(ctx context.Context, out, shell string) (sink, error) {
	switch {
	case shell != "":
		cmd := exec.CommandContext(ctx, "sh", "-c", shell)
		cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("run --cmd: %w", err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("run --cmd: %w", err)
		}
		return &cmdSink{cmd: cmd, in: in, shell: shell}, nil
	case out == "-":
		return stdoutSink{a.stdout}, nil
	default:
		return newFileSink(out)
	}
}

type stdoutSink struct{ io.Writer }

func (stdoutSink) commit() error { return nil }
func (stdoutSink) abort()        {}

// fileSink writes FILE.partial and renames it to FILE on commit.
type fileSink struct {
	*os.File
	final string
}

func newFileSink(path string) (*fileSink, error) {
	f, err := os.OpenFile(path+".partial", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	return &fileSink{File: f, final: path}, nil
}

func (s *fileSink) commit() error {
	if err := s.Sync(); err != nil {
		s.abort()
		return fmt.Errorf("write %s: %w", s.final, err)
	}
	if err := s.Close(); err != nil {
		os.Remove(s.Name())
		return fmt.Errorf("write %s: %w", s.final, err)
	}
	if err := os.Rename(s.Name(), s.final); err != nil {
		os.Remove(s.Name())
		return fmt.Errorf("write %s: %w", s.final, err)
	}
	return nil
}

func (s *fileSink) abort() {
	s.Close()
	os.Remove(s.Name())
}

type cmdSink struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	shell string
}

func (s *cmdSink) Write(p []byte) (int, error) {
	n, err := s.in.Write(p)
	if err != nil {
		return n, fmt.Errorf("--cmd %q stopped reading: %w", s.shell, err)
	}
	return n, nil
}

func (s *cmdSink) commit() error {
	s.in.Close()
	if err := s.cmd.Wait(); err != nil {
		return fmt.Errorf("--cmd %q failed: %w", s.shell, err)
	}
	return nil
}

func (s *cmdSink) abort() {
	_ = s.cmd.Process.Kill()
	s.in.Close()
	_ = s.cmd.Wait()
}

func (a *app) printDownload(d client.Download, coll, ref, out string, asJSON bool) error {
	if asJSON {
		return a.printJSON(map[string]any{"collectionId": coll, "version": ref, "filename": d.Filename,
			"size": d.Size, "sha256": d.SHA256, "resumed": d.Resumed, "output": out})
	}
	if out == "-" {
		return nil // standard output holds the data itself
	}
	fmt.Fprintf(a.stderr, "Restored %s of collection %s (%s, %s, sha256 verified)\n", d.Filename, coll, ref, progress.Bytes(d.Size))
	return nil
}

var uploadCommand = command{
	summary: "upload an already-encrypted file or stream",
	usage:   "upload --collection ID (FILE | -) [--json]",
	about: `Sends bytes as they are (encrypt them first; use backup to have backupctl encrypt). A FILE is
hashed first and sent with Content-Length and an X-Content-SHA256 header, and retried on 503 and
connection errors; standard input goes chunked with the sha256 in a trailer.`,
	example: `  backupctl upload --collection web-backups site.tar.gz.gpg
  gpg -e -r it@foodbank.example.org < dump.sql | backupctl upload --collection db-backups -`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		coll := fs.String("collection", "", "the collection's id (required)")
		quiet := fs.Bool("quiet", false, "show no progress")
		asJSON := fs.Bool("json", false, "print the stored version as JSON")
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if *coll == "" || len(pos) != 1 {
			return usagef("--collection and one FILE or - are required")
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		body := client.Body{Size: -1}
		if pos[0] == "-" {
			body.Open = func() (io.ReadCloser, error) { return io.NopCloser(a.stdin), nil }
		} else {
			sum, size, err := hashFile(pos[0])
			if err != nil {
				return err
			}
			body = client.Body{Size: size, SHA256: sum, Replayable: true,
				Open: func() (io.ReadCloser, error) { return os.Open(pos[0]) }}
		}
		m := a.meter(*quiet, "upload", body.Size)
		if m != nil {
			open := body.Open
			body.Open = func() (io.ReadCloser, error) {
				r, err := open()
				if err != nil {
					return nil, err
				}
				m.Set(0)
				return struct {
					io.Reader
					io.Closer
				}{m.Reader(r), r}, nil
			}
		}
		v, err := c.Upload(ctx, *coll, body)
		if m != nil {
			m.Finish(err == nil)
		}
		if err != nil {
			return err
		}
		return a.printVersion(v, *asJSON)
	},
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("upload: read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

var downloadCommand = command{
	summary: "download a version as stored (still encrypted), verified against its sha256",
	usage:   "download --collection ID [--version latest|vN|ID] -o (FILE | -) [--json]",
	about: `Downloads the stored bytes without decrypting them, resuming an interrupted transfer with
Range requests and checking the sha256 against the ETag. -o FILE is written to FILE.partial and
renamed only after the check passed.`,
	example: `  backupctl download --collection web-backups --version v3 -o site.tar.gz.gpg
  backupctl download --collection web-backups -o - | gpg -d | tar -xz`,
	run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
		coll := fs.String("collection", "", "the collection's id (required)")
		ref := fs.String("version", "latest", "which version: latest, first, vN, N or a version id")
		out := fs.String("o", "", "the output file (- for standard output) (required)")
		quiet := fs.Bool("quiet", false, "show no progress")
		asJSON := fs.Bool("json", false, "print what was downloaded as JSON")
		pos, err := parse(fs, args)
		if err != nil {
			return err
		}
		if *coll == "" || *out == "" || len(pos) > 0 {
			return usagef("--collection and -o are required")
		}
		if *asJSON && *out == "-" {
			return usagef("--json cannot share standard output with -o -")
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		s, err := a.openSink(ctx, *out, "")
		if err != nil {
			return err
		}
		m := a.meter(*quiet, "download", -1)
		var w io.Writer = s
		if m != nil {
			w = meterWriter{s, m}
		}
		d, err := c.Download(ctx, *coll, *ref, w, func(d client.Download) {
			if m != nil {
				m.SetTotal(d.Size)
			}
		})
		if m != nil {
			m.Finish(err == nil)
		}
		if err != nil {
			s.abort()
			return err
		}
		if err := s.commit(); err != nil {
			return err
		}
		if *asJSON {
			return a.printDownload(d, *coll, *ref, *out, true)
		}
		if *out != "-" {
			fmt.Fprintf(a.stderr, "Downloaded %s of collection %s to %s (%s, sha256 %s verified)\n", d.Filename, *coll, filepath.Clean(*out), progress.Bytes(d.Size), d.SHA256)
		}
		return nil
	},
}
