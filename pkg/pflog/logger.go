package pflog

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Defaults for the zero Config fields.
const (
	// DefaultSnapLen is how many bytes of each packet are kept, counted
	// from the IP header (the pflog header comes on top). pflogd's own
	// defaults (160 on OpenBSD, 116 on FreeBSD) count the pflog header
	// too and leave 44 to 60 packet bytes, which cut an IPv6 TCP header
	// with options. 160 packet bytes hold IPv6 (40) with a few extension
	// headers and TCP with all its options (60), or an ICMP error with the
	// whole quoted IPv4 and TCP header.
	DefaultSnapLen = 160
	// DefaultRingSize is the number of records the ring holds between
	// Log and the writer goroutine: 4096 * 160 bytes is 640 KiB of
	// packets plus 256 KiB of slots, room for a burst of a few
	// milliseconds at a million logged packets a second.
	DefaultRingSize = 4096
	// DefaultMaxSize is the size at which the log file is rotated.
	DefaultMaxSize = 16 << 20
	// DefaultKeep is how many rotated files are kept (FILE.1 ... FILE.4).
	DefaultKeep = 4
	// DefaultSubscriberBuffer is each subscriber's buffer in bytes: about
	// 1000 default-sized records.
	DefaultSubscriberBuffer = 256 << 10

	// maxBatch bounds how many records the writer goroutine takes from
	// the ring before writing them out, so slots come back to producers
	// and subscribers see records steadily under load.
	maxBatch = 256
)

// Config configures a Logger. The zero value means the defaults: no file,
// subscribers only.
type Config struct {
	// Path is the log file; "" means no file. Its directory is created
	// (0700) if missing, and the file and its rotations are created 0600.
	// A file already at Path when the Logger starts is rotated to Path.1,
	// not overwritten.
	Path string
	// MaxSize is the size in bytes at which the file is rotated: Path is
	// renamed Path.1 (Path.1 to Path.2 and so on) and a new file with its
	// own pcap header is started. 0 means DefaultMaxSize; negative means
	// never rotate.
	MaxSize int64
	// Keep is how many rotated files are kept; the oldest beyond it is
	// overwritten. 0 means DefaultKeep; negative means none (rotation
	// starts Path afresh).
	Keep int
	// SnapLen is how many bytes of each packet are kept, from the IP
	// header; 0 means DefaultSnapLen. At most FileSnapLen-HeaderLen.
	SnapLen int
	// RingSize is the number of records between Log and the writer,
	// rounded up to a power of two; 0 means DefaultRingSize.
	RingSize int
	// SubscriberBuffer is each subscriber's buffer in bytes; 0 means
	// DefaultSubscriberBuffer. At least large enough for one record.
	SubscriberBuffer int
}

func (c Config) withDefaults() (Config, error) {
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.SnapLen < 0 || c.SnapLen > FileSnapLen-HeaderLen {
		return c, fmt.Errorf("pflog: snap length %d out of range 1..%d", c.SnapLen, FileSnapLen-HeaderLen)
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.RingSize < 0 || c.RingSize > 1<<24 {
		return c, fmt.Errorf("pflog: ring size %d out of range 1..%d", c.RingSize, 1<<24)
	}
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.Keep == 0 {
		c.Keep = DefaultKeep
	}
	if c.SubscriberBuffer == 0 {
		c.SubscriberBuffer = DefaultSubscriberBuffer
	}
	c.SubscriberBuffer = max(c.SubscriberBuffer, FileHeaderLen+RecordHeaderLen+HeaderLen+c.SnapLen)
	return c, nil
}

// Stats are a Logger's counters since it started.
type Stats struct {
	Logged          uint64 // records Log accepted into the ring
	Dropped         uint64 // records Log refused: the ring was full, or the Logger closed
	Written         uint64 // records written to the file
	Rotations       uint64 // file rotations
	SubscriberDrops uint64 // records some subscriber missed because its buffer was full, summed over subscribers
	WriteErrors     uint64 // failed file operations (open, write, rename); the records involved are lost to the file
	Subscribers     int    // current subscribers
}

// Logger takes records from the packet path without blocking and writes
// them, from one goroutine of its own, to a rotated pcap file and to live
// subscribers. Log is safe for concurrent use by any number of goroutines;
// so are Subscribe, Stats and Close.
type Logger struct {
	cfg Config
	q   *ring

	closed   atomic.Bool // set by Close: Log refuses
	sleeping atomic.Bool // the writer is about to wait on wake
	wake     chan struct{}
	done     chan struct{}
	exited   chan struct{}
	once     sync.Once
	closeErr error

	dropped, written, rotations, subDrops, writeErrs atomic.Uint64

	subsMu sync.Mutex
	subs   []*Subscription

	// Owned by the writer goroutine.
	file     *fileSink
	batch    []byte
	ends     []int
	subsSnap []*Subscription
}

// New starts a Logger. It fails when the configuration is out of range or
// the file cannot be created.
func New(cfg Config) (*Logger, error) {
	l, err := newLogger(cfg)
	if err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

// newLogger builds a Logger without starting its writer, so tests can fill
// the ring.
func newLogger(cfg Config) (*Logger, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Logger{
		cfg:    cfg,
		q:      newRing(cfg.RingSize, cfg.SnapLen),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
		batch:  make([]byte, 0, maxBatch*(RecordHeaderLen+HeaderLen+cfg.SnapLen)),
		ends:   make([]int, 0, maxBatch),
	}
	if cfg.Path != "" {
		l.file, err = openFileSink(cfg.Path, cfg.MaxSize, cfg.Keep, &l.rotations, &l.writeErrs, &l.written)
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Log copies r, its packet cut to the snap length, into the ring and
// returns at once. When the ring is full, or the Logger is closed, the
// record is dropped and counted (Stats.Dropped) and Log returns false. It
// never blocks and never allocates; r is not retained.
//
// Cost (BenchmarkLog, 2-CPU AMD EPYC, Go 1.26): 13 ns for a record that
// is accepted, 0 allocations; a refused record costs less. The writer
// goroutine then spends about 100 ns a record encoding and writing it
// (BenchmarkDrainToFile), so a sustained rate above some millions of
// logged packets a second ends in drops, not in a slower packet path.
func (l *Logger) Log(r *Record) bool {
	if l.closed.Load() || !l.q.push(r) {
		l.dropped.Add(1)
		return false
	}
	// Wake the writer only if it said it is going to sleep: when it is
	// busy, producers touch neither the flag's line nor the channel.
	if l.sleeping.Load() && l.sleeping.CompareAndSwap(true, false) {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// Stats returns the counters.
func (l *Logger) Stats() Stats {
	l.subsMu.Lock()
	n := len(l.subs)
	l.subsMu.Unlock()
	return Stats{
		Logged:          l.q.tail.Load(),
		Dropped:         l.dropped.Load(),
		Written:         l.written.Load(),
		Rotations:       l.rotations.Load(),
		SubscriberDrops: l.subDrops.Load(),
		WriteErrors:     l.writeErrs.Load(),
		Subscribers:     n,
	}
}

// Close stops accepting records, writes out what the ring holds, closes the
// file and ends every subscription (its reader gets what is buffered, then
// io.EOF). It returns the error of closing the file. A Log that races with
// Close may be counted in Logged yet never written; stop logging first for
// exact counts. Close is idempotent.
func (l *Logger) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.done)
		<-l.exited
	})
	return l.closeErr
}

// run is the writer goroutine.
func (l *Logger) run() {
	defer close(l.exited)
	for {
		if l.drain() {
			continue
		}
		// Announce the sleep, then look again: a producer that published
		// after our look sees the flag and wakes us (all atomics are
		// sequentially consistent, so one of the two sees the other).
		l.sleeping.Store(true)
		if l.q.ready() {
			l.sleeping.Store(false)
			continue
		}
		select {
		case <-l.wake:
			l.sleeping.Store(false)
		case <-l.done:
			l.sleeping.Store(false)
			l.finish()
			return
		}
	}
}

// finish drains the ring, including records whose producers claimed a slot
// before Close and are still copying, then closes the sinks.
func (l *Logger) finish() {
	for spins := 0; spins < 1000; {
		if l.drain() {
			continue
		}
		if l.q.head == l.q.tail.Load() {
			break
		}
		spins++
		runtime.Gosched()
	}
	if l.file != nil {
		l.closeErr = l.file.close()
	}
	l.subsMu.Lock()
	subs := l.subs
	l.subs = nil
	l.subsMu.Unlock()
	for _, s := range subs {
		s.end()
	}
}

// drain moves up to maxBatch records from the ring to the sinks and reports
// whether there were any.
func (l *Logger) drain() bool {
	l.batch, l.ends = l.batch[:0], l.ends[:0]
	var rec Record
	for len(l.ends) < maxBatch && l.q.peek(&rec) {
		l.batch = AppendRecord(l.batch, &rec)
		l.ends = append(l.ends, len(l.batch))
		l.q.release()
	}
	if len(l.ends) == 0 {
		return false
	}
	if l.file != nil {
		l.file.write(l.batch, l.ends)
	}
	l.subsMu.Lock()
	l.subsSnap = append(l.subsSnap[:0], l.subs...)
	l.subsMu.Unlock()
	for i, s := range l.subsSnap {
		if n := s.push(l.batch, l.ends); n > 0 {
			l.subDrops.Add(uint64(n))
		}
		l.subsSnap[i] = nil
	}
	return true
}
