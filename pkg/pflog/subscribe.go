package pflog

import (
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// Subscription is a live feed of the log as a pcap stream: the file header
// first, then whole records as the Logger writes them. It is an io.Reader
// and an io.WriterTo, so the daemon can relay it to a socket with io.Copy
// and a client can pipe it to "tcpdump -n -e -r -"; NewReader(sub) decodes
// it into records instead.
//
// Records wait in a buffer of Config.SubscriberBuffer bytes. When a record
// does not fit, because the reader is slow, it is dropped for this
// subscriber only and counted (Dropped, and the Logger's
// Stats.SubscriberDrops): the writer goroutine never waits for a
// subscriber, so neither the ring, the file nor other subscribers slow
// down. The stream stays well formed: a record is buffered whole or not at
// all.
//
// Read and WriteTo are for one reader goroutine; Close and Dropped may be
// called from any.
type Subscription struct {
	l       *Logger
	dropped atomic.Uint64
	ready   chan struct{} // a token when bytes arrive
	done    chan struct{} // closed by Close or by the Logger's Close
	endOnce sync.Once

	mu     sync.Mutex
	buf    []byte
	r, n   int  // read position and buffered bytes in buf
	ended  bool // no more bytes will arrive
	closed bool // the subscriber closed it: Read returns io.EOF at once
}

// Subscribe starts a subscription. On a closed Logger the subscription
// holds just the pcap file header and then ends.
func (l *Logger) Subscribe() *Subscription {
	s := &Subscription{
		l:     l,
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
		buf:   make([]byte, l.cfg.SubscriberBuffer),
	}
	s.n = len(AppendFileHeader(s.buf[:0]))
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	if l.closed.Load() {
		s.end()
	} else {
		l.subs = append(l.subs, s)
	}
	return s
}

// push buffers the records of batch (record i ends at ends[i]) that fit and
// returns how many did not. Writer goroutine only.
func (s *Subscription) push(batch []byte, ends []int) int {
	drops, prev := 0, 0
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return 0
	}
	for _, end := range ends {
		rec := batch[prev:end]
		prev = end
		if len(rec) > len(s.buf)-s.n {
			drops++
			continue
		}
		w := (s.r + s.n) % len(s.buf)
		c := copy(s.buf[w:], rec)
		copy(s.buf, rec[c:])
		s.n += len(rec)
	}
	s.mu.Unlock()
	if drops > 0 {
		s.dropped.Add(uint64(drops))
	}
	if drops < len(ends) {
		select {
		case s.ready <- struct{}{}:
		default:
		}
	}
	return drops
}

// end marks the stream complete: the reader gets what is buffered, then
// io.EOF.
func (s *Subscription) end() {
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		close(s.done)
	})
}

// Read reads the pcap stream. It blocks until bytes are buffered, and
// returns io.EOF after the subscription is closed, or after the Logger is
// closed and everything buffered has been read.
func (s *Subscription) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, io.EOF
		}
		if s.n > 0 {
			c := copy(p, s.buf[s.r:min(s.r+s.n, len(s.buf))])
			if c < len(p) && c < s.n {
				c += copy(p[c:], s.buf[:s.n-c])
			}
			s.r = (s.r + c) % len(s.buf)
			s.n -= c
			s.mu.Unlock()
			return c, nil
		}
		ended := s.ended
		s.mu.Unlock()
		if ended {
			return 0, io.EOF
		}
		select {
		case <-s.ready:
		case <-s.done:
		}
	}
}

// WriteTo copies the stream to w until it ends (nil error) or w fails. Bytes
// are copied out of the buffer before they are written, so a slow w never
// holds up the Logger.
func (s *Subscription) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 32<<10)
	var total int64
	for {
		n, err := s.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Dropped returns how many records this subscriber missed because its
// buffer was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes. A Read in progress returns io.EOF. Close is
// idempotent and always returns nil.
func (s *Subscription) Close() error {
	s.l.subsMu.Lock()
	for i, x := range s.l.subs {
		if x == s {
			s.l.subs = slices.Delete(s.l.subs, i, i+1)
			break
		}
	}
	s.l.subsMu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.end()
	return nil
}
