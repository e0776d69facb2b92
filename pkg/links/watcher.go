package links

import (
	"sync"
	"sync/atomic"
	"time"
)

// Config says where and how to watch. The zero value watches the caller's
// network namespace with the default coalescing and buffer size.
type Config struct {
	// NetnsName is a network namespace made by "ip netns add"; empty means
	// the namespace of the thread that calls Start or Current.
	NetnsName string
	// Coalesce is how long the Watcher waits for another notification
	// before it publishes what it has read; a batch still ends after 20
	// times Coalesce, so a steady stream publishes too. Zero means 5 ms;
	// negative means publish after every notification.
	Coalesce time.Duration
	// ReadBuffer is the notification socket's receive buffer in bytes,
	// forced past net.core.rmem_max when the process may (root). Zero means
	// 1 MiB, about a thousand address notifications.
	ReadBuffer int
}

const (
	defaultCoalesce   = 5 * time.Millisecond
	defaultReadBuffer = 1 << 20
	// batchLimit bounds one batch at this many times Coalesce.
	batchLimit = 20
)

func (c Config) coalesce() time.Duration {
	switch {
	case c.Coalesce == 0:
		return defaultCoalesce
	case c.Coalesce < 0:
		return 0
	}
	return c.Coalesce
}

func (c Config) readBuffer() int {
	if c.ReadBuffer <= 0 {
		return defaultReadBuffer
	}
	return c.ReadBuffer
}

// Stats counts what a Watcher did.
type Stats struct {
	// Notifications is the number of link and address notifications read.
	Notifications uint64
	// Publishes is the number of calls to fn, the initial one included.
	Publishes uint64
	// Overruns is the number of times the kernel dropped notifications
	// (ENOBUFS), each followed by a full re-dump.
	Overruns uint64
	// Dumps is the number of full dumps, the initial one included.
	Dumps uint64
	// Malformed is the number of messages skipped because they could not
	// be decoded; the kernel sends none.
	Malformed uint64
}

// A Watcher follows the links of one network namespace and calls its
// callback with a new Snapshot after each change. Start makes one; its
// methods are safe for concurrent use.
type Watcher struct {
	snap  atomic.Pointer[Snapshot] // the last published
	stats struct {
		notifications, publishes, overruns, dumps, malformed atomic.Uint64
	}

	done     chan struct{} // closed when the goroutine has returned
	err      error         // why it returned; written before done is closed
	stopOnce sync.Once
	stopFn   func() // interrupts the goroutine; set by Start
}

// Snapshot returns the last Snapshot passed to fn.
func (w *Watcher) Snapshot() Snapshot { return *w.snap.Load() }

// Stats returns the Watcher's counters.
func (w *Watcher) Stats() Stats {
	return Stats{
		Notifications: w.stats.notifications.Load(),
		Publishes:     w.stats.publishes.Load(),
		Overruns:      w.stats.overruns.Load(),
		Dumps:         w.stats.dumps.Load(),
		Malformed:     w.stats.malformed.Load(),
	}
}

// Done returns a channel closed once the Watcher has stopped: after Close,
// after the context passed to Start is done, or after a failure Err
// reports. No call to fn starts after that.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err returns why the Watcher stopped: nil before it has, and after Close
// or the end of Start's context; the error otherwise (a failed re-dump, a
// socket error). A daemon that sees one has lost track of the links and
// should stop or start a new Watcher.
func (w *Watcher) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// Close stops the Watcher and waits for its goroutine to return; it is
// idempotent and returns nil. fn must not call it: Close waits for fn.
func (w *Watcher) Close() error {
	w.stop()
	<-w.done
	return nil
}

func (w *Watcher) stop() { w.stopOnce.Do(w.stopFn) }

// publish makes s the current Snapshot and passes it to fn.
func (w *Watcher) publish(s Snapshot, fn func(Snapshot)) {
	w.snap.Store(&s)
	w.stats.publishes.Add(1)
	fn(s)
}
