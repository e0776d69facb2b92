package links

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Start subscribes to link and address notifications in the namespace
// cfg names, dumps the links and addresses, calls fn with the initial
// Snapshot and returns a Watcher that calls fn again after every change,
// from its own goroutine, until Close or until ctx is done. fn is never
// called concurrently with itself; see the package documentation.
func Start(ctx context.Context, cfg Config, fn func(Snapshot)) (*Watcher, error) {
	if fn == nil {
		return nil, errors.New("links: Start needs a callback")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Subscribe first, then dump: see the package documentation.
	ev, err := dial(cfg, unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR)
	if err != nil {
		return nil, err
	}
	if err := setReadBuffer(ev, cfg.readBuffer()); err != nil {
		ev.Close()
		return nil, fmt.Errorf("links: setting the receive buffer: %w", err)
	}
	dc, err := dial(cfg)
	if err != nil {
		ev.Close()
		return nil, err
	}

	w := &Watcher{done: make(chan struct{})}
	r := &reader{w: w, ev: ev, dc: dc, fn: fn, coalesce: cfg.coalesce()}
	w.stopFn = func() {
		// Closing the sockets interrupts a blocked read or dump.
		r.closing.Store(true)
		ev.Close()
		dc.Close()
	}
	unregister := context.AfterFunc(ctx, w.stop)
	fail := func(err error) (*Watcher, error) {
		unregister()
		w.stop()
		w.err = err
		close(w.done)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if err := r.redump(); err != nil {
		return fail(err)
	}
	// Apply what is already queued, notifications from before the dump
	// included, so that the first Snapshot is as fresh as later ones.
	if _, err := r.drain(); err != nil {
		return fail(err)
	}
	w.publish(r.t.snapshot(), fn)

	go func() {
		defer close(w.done)
		defer unregister()
		w.err = r.run()
	}()
	return w, nil
}

// Current returns the links of the namespace cfg names, as one dump shows
// them (for "statewall check --expand").
func Current(cfg Config) (Snapshot, error) {
	c, err := dial(cfg)
	if err != nil {
		return Snapshot{}, err
	}
	defer c.Close()
	var malformed atomic.Uint64
	t, err := dump(c, &malformed)
	if err != nil {
		return Snapshot{}, err
	}
	return t.snapshot(), nil
}

// reader is the Watcher's goroutine: everything in it but closing belongs
// to that goroutine (or to Start, before the goroutine exists).
type reader struct {
	w        *Watcher
	ev       *netlink.Conn // subscribed to the groups
	dc       *netlink.Conn // for dumps
	fn       func(Snapshot)
	coalesce time.Duration
	t        *table
	closing  atomic.Bool // set by stop, before it closes the sockets
}

// run reads, applies and publishes until the Watcher is stopped (nil) or
// fails (the error).
func (r *reader) run() error {
	for {
		changed, err := r.batch()
		if r.closing.Load() {
			return nil
		}
		if err != nil {
			return err
		}
		if changed {
			r.w.publish(r.t.snapshot(), r.fn)
		}
	}
}

// batch waits for a notification, applies it and those that follow within
// the coalescing window, and reports whether the table changed.
func (r *reader) batch() (changed bool, err error) {
	if err := r.ev.SetReadDeadline(time.Time{}); err != nil {
		return false, err
	}
	msgs, err := r.ev.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			return true, r.overrun()
		}
		return false, fmt.Errorf("links: reading notifications: %w", err)
	}
	changed = r.apply(msgs)
	more, err := r.drain()
	return changed || more, err
}

// drain applies the notifications that arrive within the coalescing
// window of each other, for at most batchLimit windows, and reports
// whether the table changed.
func (r *reader) drain() (changed bool, err error) {
	if r.coalesce <= 0 {
		return false, nil
	}
	end := time.Now().Add(batchLimit * r.coalesce)
	for now := time.Now(); now.Before(end); now = time.Now() {
		deadline := now.Add(r.coalesce)
		if deadline.After(end) {
			deadline = end
		}
		if err := r.ev.SetReadDeadline(deadline); err != nil {
			return changed, err
		}
		msgs, err := r.ev.Receive()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return changed, nil
		case errors.Is(err, unix.ENOBUFS):
			return true, r.overrun()
		case err != nil:
			return changed, fmt.Errorf("links: reading notifications: %w", err)
		}
		changed = r.apply(msgs) || changed
	}
	return changed, nil
}

// apply applies notifications to the table and reports whether it changed.
func (r *reader) apply(msgs []netlink.Message) bool {
	changed := false
	for _, m := range msgs {
		r.w.stats.notifications.Add(1)
		c, err := apply(r.t, m)
		if err != nil {
			r.w.stats.malformed.Add(1)
		}
		changed = changed || c
	}
	return changed
}

// overrun handles ENOBUFS: the kernel dropped notifications, so the table
// may be wrong in ways no later notification repairs. The socket stays
// subscribed, so a fresh dump plus what is queued after it is complete.
func (r *reader) overrun() error {
	r.w.stats.overruns.Add(1)
	return r.redump()
}

// redump replaces the table with a fresh dump.
func (r *reader) redump() error {
	t, err := dump(r.dc, &r.w.stats.malformed)
	if err != nil {
		return err
	}
	r.w.stats.dumps.Add(1)
	r.t = t
	return nil
}
