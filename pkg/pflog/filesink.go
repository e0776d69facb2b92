package pflog

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// retryAfter is how long the file sink waits after a failed open or write
// before it tries to open the file again, so that a full disk costs one
// failed syscall a second rather than one a batch.
const retryAfter = time.Second

// fileSink writes batches of pcap records to a file and rotates it by size.
// It belongs to the writer goroutine.
type fileSink struct {
	path    string
	maxSize int64 // < 0: never rotate
	keep    int   // < 0: keep none
	f       *os.File
	size    int64
	retryAt time.Time
	hdr     [FileHeaderLen]byte

	rotations, errs, written *atomic.Uint64
}

func openFileSink(path string, maxSize int64, keep int, rotations, errs, written *atomic.Uint64) (*fileSink, error) {
	s := &fileSink{path: path, maxSize: maxSize, keep: keep, rotations: rotations, errs: errs, written: written}
	AppendFileHeader(s.hdr[:0])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// Keep what a previous run logged: move it aside as a rotation would.
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := s.shift(); err != nil {
			return nil, err
		}
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// open creates the file afresh and writes the pcap header.
func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(s.hdr[:]); err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, FileHeaderLen
	return nil
}

// shift renames Path.(keep-1) to Path.keep, ..., Path to Path.1 (or
// removes Path when nothing is kept).
func (s *fileSink) shift() error {
	if s.keep < 0 {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	for i := s.keep - 1; i >= 1; i-- {
		err := os.Rename(s.path+"."+strconv.Itoa(i), s.path+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return os.Rename(s.path, s.path+".1")
}

// rotate closes the file, shifts the old ones and starts a new file.
func (s *fileSink) rotate() {
	s.rotations.Add(1)
	if err := s.f.Close(); err != nil {
		s.errs.Add(1)
	}
	s.f = nil
	if err := s.shift(); err != nil {
		// Keep logging into the same file rather than lose records:
		// reopen it in append mode.
		s.errs.Add(1)
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			s.errs.Add(1)
			s.retryAt = time.Now().Add(retryAfter)
			return
		}
		s.f = f
		return
	}
	if err := s.open(); err != nil {
		s.errs.Add(1)
		s.retryAt = time.Now().Add(retryAfter)
	}
}

// write writes the records of batch (record i ends at ends[i]), rotating
// before a record that would take the file past maxSize. A file always
// gets at least one record, however large.
func (s *fileSink) write(batch []byte, ends []int) {
	if s.f == nil {
		if time.Now().Before(s.retryAt) {
			return
		}
		if err := s.shiftAndOpen(); err != nil {
			s.errs.Add(1)
			s.retryAt = time.Now().Add(retryAfter)
			return
		}
	}
	start, from := 0, 0 // pending bytes batch[start:], records ends[from:]
	prev := 0
	for i, end := range ends {
		pending := int64(prev - start)
		if s.maxSize > 0 && s.size+pending+int64(end-prev) > s.maxSize && s.size+pending > FileHeaderLen {
			if !s.flush(batch[start:prev], i-from) {
				return
			}
			s.rotate()
			if s.f == nil {
				return
			}
			start, from = prev, i
		}
		prev = end
	}
	s.flush(batch[start:], len(ends)-from)
}

// shiftAndOpen starts a file after a failure, keeping whatever the failed
// one holds (it may end in a partial record) as Path.1.
func (s *fileSink) shiftAndOpen() error {
	if _, err := os.Stat(s.path); err == nil {
		if err := s.shift(); err != nil {
			return err
		}
	}
	return s.open()
}

// flush writes b, which holds n records, and reports success.
func (s *fileSink) flush(b []byte, n int) bool {
	if len(b) == 0 {
		return true
	}
	w, err := s.f.Write(b)
	s.size += int64(w)
	if err != nil {
		s.errs.Add(1)
		s.f.Close()
		s.f = nil
		s.retryAt = time.Now().Add(retryAfter)
		return false
	}
	s.written.Add(uint64(n))
	return true
}

func (s *fileSink) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
