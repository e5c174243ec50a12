package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"backuprepo/shared"
)

// FuzzMultipartFile drives the upload handler's multipart reading (multipartFile, then
// finish, then streamFailure's classification) over a body read through the same bodyReader
// the handler uses. Half of the inputs are arbitrary bytes; the other half are multipart
// bodies built from the fuzz bytes, with form fields before and after the file part, fields
// at and just over maxSkipped, long epilogues, and bodies cut short or failing mid-way, so
// that the exact result can be predicted. Properties:
//   - nothing panics;
//   - an error is INVALID_INPUT (the framing) or, exactly when the body's reader failed, the
//     transfer error (errClientGone wrapping that failure) — never anything else;
//   - a well-formed body gives the file part's exact bytes, a malformed one an error;
//   - no more of the body is read than the bounds allow: maxSkipped of fields, maxEpilogue
//     after the closing delimiter, plus what multipart.Reader buffers.
//
// shape picks the body: bit 0 built (1) or raw (0); bits 1-2 fields before the file; bit 3
// fields after it; bits 4-5 fields sized at maxSkipped (1), just over it before the file (2)
// or after it (3); bit 6 a long epilogue; bit 7 the file found by its file name rather than
// the field name "file". cut: bits 24-25 are the fault (1 the body ends, 2 its reader fails),
// the low 24 bits where (modulo the body's length + 1).
func FuzzMultipartFile(f *testing.F) {
	f.Add(uint8(0), uint32(0), "b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nhello\r\n--b--\r\n"))
	f.Add(uint8(0), uint32(0), "b", []byte("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\n"))
	f.Add(uint8(0), uint32(1<<24|40), "b", []byte("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nhello\r\n--b--"))
	f.Add(uint8(0), uint32(0), "XyZ", []byte("--XyZ\nContent-Disposition: form-data; name=\"file\"\n\nlf only\n--XyZ--\n"))
	f.Add(uint8(1), uint32(0), "boundary", []byte("a backup's bytes"))
	f.Add(uint8(1|2<<1|1<<3), uint32(0), "0123456789", []byte("field one|field two|the file|after"))
	f.Add(uint8(1|1<<1|1<<4), uint32(0), "b1", []byte("exactly maxSkipped of fields"))
	f.Add(uint8(1|1<<1|2<<4), uint32(0), "b2", []byte("one byte over maxSkipped"))
	f.Add(uint8(1|1<<3|3<<4), uint32(0), "b3", []byte("too much after the file"))
	f.Add(uint8(1|1<<6), uint32(0), "b4", []byte("long epilogue"))
	f.Add(uint8(1|1<<7), uint32(1<<24|100), "b5", []byte("cut short"))
	f.Add(uint8(1|1<<1), uint32(2<<24|90), "b6", []byte("reader fails"))
	f.Add(uint8(1|1<<6), uint32(2<<24|0xffffff), "b7", []byte("fails in the epilogue"))

	f.Fuzz(func(t *testing.T, shape uint8, cut uint32, boundary string, data []byte) {
		var (
			body []byte
			want *builtBody // nil: no prediction beyond the error classes
		)
		if shape&1 == 0 {
			if len(boundary) == 0 || len(boundary) > 70 {
				boundary = "b" // what multipartBoundary lets through
			}
			body = data
		} else {
			boundary = bcharsOnly(boundary)
			want = buildBody(shape, boundary, data)
			body = want.bytes
		}

		src := &faultyReader{data: body, at: -1}
		fault := cut >> 24 & 3
		at := int(cut&0xffffff) % (len(body) + 1)
		switch fault {
		case 1:
			src.data = body[:at]
		case 2:
			src.at = at
		default:
			fault = 0
		}

		got, err := readMultipartFile(src, boundary)

		// The error's class follows from what the reader did, whatever the body.
		switch {
		case src.failed && err == nil:
			t.Fatalf("the body's reader failed at %d, yet the file part was accepted", src.at)
		case src.failed && !(errors.Is(err, errClientGone) && errors.Is(err, errTransport)):
			t.Fatalf("the body's reader failed, but the error is not classed as a cut transfer: %v", err)
		case !src.failed && err != nil && shared.ErrorCode(err) != shared.CodeInvalidInput:
			t.Fatalf("error %v (code %s) is neither INVALID_INPUT nor a transfer error", err, shared.ErrorCode(err))
		}
		if src.maxRead > len(src.data) {
			t.Fatalf("read %d bytes of a %d-byte body", src.maxRead, len(src.data))
		}
		if want == nil {
			return
		}

		if bound := want.readBound(); src.maxRead > bound {
			t.Fatalf("read up to byte %d of a %d-byte body; the bounds allow %d (%s)", src.maxRead, len(body), bound, want.outcome)
		}
		if want.ambiguous {
			return // the boundary occurs in a part's content: the framing is not what was meant
		}
		if fault == 1 && at == want.closeEnd+1 {
			// The body ends "--boundary--\r": mime/multipart refuses the lone CR after the
			// closing delimiter. Either answer is fair, but an accepted file must be exact.
			if err == nil && !bytes.Equal(got, want.file) {
				t.Fatalf("file part read as %d bytes, want %d", len(got), len(want.file))
			}
			return
		}
		complete := fault == 0 || at >= want.closeEnd
		switch {
		case fault == 2 && want.outcome == outcomeOK && at < want.closeEnd && !src.failed:
			t.Fatalf("the body's reader fails at %d, before the closing delimiter ends at %d, but it was not read there", at, want.closeEnd)
		case fault == 2 && want.outcome == outcomeOK && at >= want.readBound():
			if err != nil {
				t.Fatalf("the reader fails at %d, past what may be read (%d), yet: %v", at, want.readBound(), err)
			}
		case src.failed:
			// checked above
		case !complete:
			if err == nil {
				t.Fatalf("a body cut at %d of %d (closing delimiter ends at %d) was accepted", at, len(body), want.closeEnd)
			}
		case want.outcome != outcomeOK:
			if err == nil {
				t.Fatalf("%s, yet the file part was accepted", want.outcome)
			}
		case err != nil:
			t.Fatalf("a well-formed body (%s) was refused: %v", want.outcome, err)
		}
		if err == nil && !bytes.Equal(got, want.file) {
			t.Fatalf("file part read as %d bytes %.40q, want %d bytes %.40q", len(got), got, len(want.file), want.file)
		}
	})
}

// readMultipartFile reads a multipart body as the upload handler does and returns the file
// part's bytes or the error the handler would answer with.
func readMultipartFile(src io.Reader, boundary string) ([]byte, error) {
	// A ResponseRecorder supports no read deadlines: bodyReader then just stops setting them.
	body := &bodyReader{r: src, rc: http.NewResponseController(httptest.NewRecorder()), idle: time.Minute}
	var buf bytes.Buffer
	file, finish, err := multipartFile(body, boundary)
	if err == nil {
		_, err = io.Copy(&buf, file)
	}
	if err == nil {
		err = finish()
	}
	if err != nil {
		return nil, (&Handler{}).streamFailure(context.Background(), err, body, errors.New("too large"))
	}
	return buf.Bytes(), nil
}

var errTransport = errors.New("connection reset (injected)")

// faultyReader serves data in small uneven reads; from offset at on (when at >= 0) every
// read fails with errTransport. It records how far the body was read.
type faultyReader struct {
	data    []byte
	off     int
	at      int
	failed  bool
	maxRead int
}

func (r *faultyReader) Read(p []byte) (int, error) {
	if r.at >= 0 && r.off >= r.at {
		r.failed = true
		return 0, errTransport
	}
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	end := len(r.data)
	if r.at >= 0 {
		end = min(end, r.at)
	}
	// Reads come in uneven sizes, as from a network, so that delimiters straddle them.
	n := min(len(p), end-r.off, 1+(r.off*7+len(p))%8191)
	copy(p, r.data[r.off:r.off+n])
	r.off += n
	r.maxRead = max(r.maxRead, r.off)
	return n, nil
}

// bcharsOnly maps s onto the characters RFC 2046 allows in a boundary (no space), 1 to 70 of them.
func bcharsOnly(s string) string {
	const bchars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
	if s == "" {
		return "b"
	}
	out := make([]byte, 0, min(len(s), 70))
	for i := 0; i < len(s) && len(out) < 70; i++ {
		out = append(out, bchars[int(s[i])%len(bchars)])
	}
	return string(out)
}

type outcome string

const (
	outcomeOK           outcome = "well-formed"
	outcomeBeforeTooBig outcome = "the fields before the file exceed maxSkipped"
	outcomeAfterTooBig  outcome = "the fields after the file exceed maxSkipped"
)

// builtBody is a multipart body made from fuzz bytes, with what reading it must give.
type builtBody struct {
	bytes    []byte
	file     []byte
	outcome  outcome
	closeEnd int // offset just past the closing delimiter "--boundary--"
	// stopAt is where the content of the fields reaches maxSkipped+1 bytes, when it does:
	// reading must stop there.
	stopAt    int
	ambiguous bool
}

// multipartBuffer is multipart.Reader's read buffer (peekBufferSize in mime/multipart): it
// may read that far ahead of what it hands out.
const multipartBuffer = 4096

// readBound is how far into the body reading may go.
func (b *builtBody) readBound() int {
	slack := multipartBuffer + 2*len("\r\n--") + 70
	if b.outcome != outcomeOK {
		return b.stopAt + slack
	}
	return b.closeEnd + slack + maxEpilogue
}

// buildBody lays out the parts shape asks for, with contents cut from data.
func buildBody(shape uint8, boundary string, data []byte) *builtBody {
	before := int(shape >> 1 & 3)
	after := int(shape >> 3 & 1)
	big := shape >> 4 & 3
	if big == 2 && before == 0 {
		before = 1
	}
	if big == 3 && after == 0 {
		after = 1
	}
	pieces := split(data, before+1+after)
	b := &builtBody{outcome: outcomeOK}
	var buf bytes.Buffer
	delim := []byte("--" + boundary)
	skipped := 0 // content bytes of the fields read past so far, before or after the file
	part := func(header string, content []byte, counted bool) {
		buf.WriteString("--" + boundary + "\r\n" + header + "\r\n\r\n")
		if bytes.Contains(content, delim) {
			b.ambiguous = true
		}
		if counted && skipped <= maxSkipped && skipped+len(content) > maxSkipped && b.stopAt == 0 {
			b.stopAt = buf.Len() + maxSkipped + 1 - skipped
		}
		if counted {
			skipped += len(content)
		}
		buf.Write(content)
		buf.WriteString("\r\n")
	}
	// The fields' sizes: the big one is the last field before the file (big 1, 2) or the
	// first after it (3), padded so the fields on its side total maxSkipped (+1 for 2 and 3).
	sum := func(ps [][]byte) int {
		n := 0
		for _, p := range ps {
			n += len(p)
		}
		return n
	}
	switch big {
	case 1, 2:
		if before > 0 {
			target := maxSkipped + int(big-1)
			if pad := target - sum(pieces[:before]); pad > 0 {
				pieces[before-1] = append(pieces[before-1], bytes.Repeat([]byte{'.'}, pad)...)
			}
		}
	case 3:
		target := maxSkipped + 1
		if pad := target - sum(pieces[before+1:]); pad > 0 {
			pieces[before+1] = append(pieces[before+1], bytes.Repeat([]byte{'.'}, pad)...)
		}
	}

	for i := range before {
		part(fmt.Sprintf("Content-Disposition: form-data; name=\"field%d\"", i), pieces[i], true)
	}
	if skipped > maxSkipped {
		b.outcome = outcomeBeforeTooBig
	}
	b.file = pieces[before]
	fileHeader := "Content-Disposition: form-data; name=\"file\""
	if shape&0x80 != 0 {
		fileHeader = "Content-Disposition: form-data; name=\"upload\"; filename=\"backup.tar.gz.gpg\""
	}
	part(fileHeader+"\r\nContent-Type: application/octet-stream", b.file, false)
	if bytes.Contains(b.file, delim) {
		b.ambiguous = true
	}
	if b.outcome == outcomeOK {
		skipped = 0
		b.stopAt = 0
	}
	for i := range after {
		part(fmt.Sprintf("Content-Disposition: form-data; name=\"after%d\"", i), pieces[before+1+i], b.outcome == outcomeOK)
	}
	if b.outcome == outcomeOK && skipped > maxSkipped {
		b.outcome = outcomeAfterTooBig
	}
	buf.WriteString("--" + boundary + "--")
	b.closeEnd = buf.Len()
	buf.WriteString("\r\n")
	if shape&0x40 != 0 {
		// An epilogue far longer than maxEpilogue: reading must stop within it.
		buf.Write(bytes.Repeat([]byte("epilogue "), 3*maxEpilogue/9))
	}
	b.bytes = buf.Bytes()
	return b
}

// split cuts data into n pieces of about equal length (copies, so they can grow).
func split(data []byte, n int) [][]byte {
	out := make([][]byte, n)
	size := len(data) / n
	for i := range n {
		start, end := i*size, (i+1)*size
		if i == n-1 {
			end = len(data)
		}
		out[i] = append([]byte(nil), data[start:end]...)
	}
	return out
}
