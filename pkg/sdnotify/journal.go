package sdnotify

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// IsJournal reports whether f is the stream systemd connected to the
// journal, as $JOURNAL_STREAM (stream, "DEVICE:INODE") names it: then a
// line may start with a priority prefix. The check by device and inode
// makes a stderr redirected elsewhere by the service (or inherited by a
// child) not count, as sd_journal_stream_fd(3) advises.
func IsJournal(stream string, f *os.File) bool {
	if stream == "" || f == nil {
		return false
	}
	ds, is, ok := strings.Cut(stream, ":")
	dev, err1 := strconv.ParseUint(ds, 10, 64)
	ino, err2 := strconv.ParseUint(is, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// Priority is the syslog priority journald gives a line of level l:
// error 3, warning 4, info 6 (notice, 5, is not a slog level), debug 7.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// PriorityHandler returns a handler that writes what newHandler's handler
// writes to w, each record prefixed with its priority ("<4>" for a
// warning): journald then files the line with that priority and strips
// the prefix. newHandler must return a handler that writes each record
// with one Write to the writer it is given, as slog's TextHandler and
// JSONHandler do.
func PriorityHandler(w io.Writer, newHandler func(io.Writer) slog.Handler) slog.Handler {
	pw := &prefixWriter{w: w}
	return &priorityHandler{inner: newHandler(pw), pw: pw}
}

// prefixWriter puts the prefix of the record being handled in front of
// the handler's one write. Precondition: mu is held (by Handle).
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix [3]byte
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], p.prefix[:]...), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

type priorityHandler struct {
	inner slog.Handler
	pw    *prefixWriter // shared by every handler derived from the first
}

func (h *priorityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *priorityHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = [3]byte{'<', byte('0' + Priority(r.Level)), '>'}
	return h.inner.Handle(ctx, r)
}

func (h *priorityHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &priorityHandler{inner: h.inner.WithAttrs(as), pw: h.pw}
}

func (h *priorityHandler) WithGroup(name string) slog.Handler {
	return &priorityHandler{inner: h.inner.WithGroup(name), pw: h.pw}
}
