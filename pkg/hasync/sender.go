package hasync

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
)

// The sending side: a session this node dialled, which carries this
// node's changes to one peer.
//
// Goroutines: the writer (write) owns the connection's write side, the
// event subscription, the seq and the batches; the reader (read) reads
// the peer's HELLO, ACKs and KEEPALIVEs. They share the pending set (the
// writer drains it, sendDirty fills it), guarded by mu, and the frames
// waiting for an ack, guarded by ackMu. Neither lock is held while
// calling the table or writing to the connection.

// Pending operations on a key. A key deleted then created again (a
// connection reopened) carries both: the DELETE goes out first.
const (
	opRecord uint8 = 1 << iota
	opDelete
	opNew // with opRecord, in note: the event was NEW
)

// pend is one key waiting to be sent: what to send, and when it changed
// first since it was last sent (for the lag). fresh: its first event since
// the last flush was NEW, so the peer cannot have it: if it goes before
// the next flush, nothing at all is sent for it (pfsync drops a deleted
// state whose insert is still queued).
type pend struct {
	ops   uint8
	fresh bool
	at    int64 // Node.mono
}

// defaultFlushEvery is Config.FlushEvery's default: the shortest time
// between two flushes of the pending set while changes keep coming: the
// changes of that time go out together, one frame for many, and a
// connection's several changes in it merge into one record, or into
// nothing for a connection made and gone in that time. A first change
// after a quiet time goes out at once. It adds at most that much to the
// sync lag. (The writer still wakes at every change: leaving the changes
// in the subscription's queue until the flush measured the same
// connection rate and a p99 lag four times longer, as the timer waits
// for a CPU under load: bench/results/sync.md.)
const defaultFlushEvery = time.Millisecond

// maxInFlight bounds the frames waiting for an ack (each kept for the
// lag and the deferrals it carries). Past it frames go out without
// asking for one: a peer that far behind is measured by DeadAfter.
const maxInFlight = 1024

// sent is one frame waiting for its ack.
type sent struct {
	seq     uint64
	at      int64 // Node.mono: the oldest change in it, or the bulk's start
	bulk    bool  // BULK_END: the ack ends the bulk
	records uint64
}

// sentDefer is one deferral a frame carried.
type sentDefer struct {
	seq uint64
	ref dref
}

type outSession struct {
	n   *Node
	l   *link
	idx int // the peer's index in Config.Peers: its bit in deferrals
	tc  *tls.Conn
	sub *conntrack.Subscription

	// The writer's own.
	seq       uint64
	lastWrite time.Time
	dropped   uint64
	recs      *batch
	dels      *batch
	urg       *batch
	small     []byte

	mu      sync.Mutex
	pending map[conntrack.Key]pend
	spare   map[conntrack.Key]pend
	resync  bool
	wake    chan struct{} // cap 1: pending has something
	urgent  chan dref     // cap MaxDeferred: Announce's records

	ackMu    sync.Mutex
	inflight ring[sent]
	defs     ring[sentDefer]
	lastAck  uint64
	lastSeq  uint64 // the last seq written: an ACK above it is garbage
	bulkSeq  uint64 // the BULK_END of the last bulk
}

// runOut dials peer i and runs one session, and logs how it ended. It
// reports whether the session got past the handshake and HELLO.
func (n *Node) runOut(ctx context.Context, i int, l *link) bool {
	addr := n.cfg.Peers[i]
	dctx, cancel := context.WithTimeout(ctx, n.handshakeTimeout)
	raw, err := n.dial(dctx, addr)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			n.logOnce(l, slog.LevelWarn, "cannot reach sync peer", err)
		}
		return false
	}
	defer raw.Close()
	tc := tls.Client(raw, n.client)
	name, r, err := n.handshake(ctx, raw, tc)
	if err != nil {
		if ctx.Err() == nil {
			l.c.cutOff[r].Add(1)
			n.logOnce(l, slog.LevelWarn, "sync peer failed the TLS handshake", err, "reason", r.String())
			n.note("cutoff out", r.String())
		}
		return false
	}
	l.mu.Lock()
	l.name = name
	l.mu.Unlock()

	runCtx := ctx
	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	s := &outSession{
		n: n, l: l, idx: i, tc: tc,
		recs: newBatch(typeRecords), dels: newBatch(typeDelete), urg: newBatch(typeRecords),
		small:   make([]byte, 0, 64+255),
		pending: make(map[conntrack.Key]pend), spare: make(map[conntrack.Key]pend),
		wake: make(chan struct{}, 1), urgent: make(chan dref, MaxDeferred),
		inflight: newRing[sent](maxInFlight), defs: newRing[sentDefer](MaxDeferred),
	}
	// Subscribe before the bulk: a change during the bulk is either in
	// it or in an event after it.
	s.sub = n.table.Subscribe(n.cfg.MaxQueue, func(e *conntrack.EntryInfo) bool { return !e.FromPeer })
	defer s.sub.Close()

	helloc := make(chan hello, 1)
	var rerr error
	var wg sync.WaitGroup
	// The reader runs first: TLS over a connection that buffers nothing
	// would otherwise deadlock on the server's first writes.
	wg.Go(func() {
		rerr = s.read(helloc)
		cancel()
	})
	up, werr := s.write(ctx, helloc)
	cancel()
	raw.Close()
	wg.Wait()
	s.finish()
	n.endSession(runCtx, l, firstBreach(werr, rerr))
	return up
}

// firstBreach picks the error that says why a session ended: a protocol
// error or a timeout over the "use of closed connection" that closing
// caused on the other side.
func firstBreach(errs ...error) error {
	var first error
	for _, err := range errs {
		if err == nil || errors.Is(err, context.Canceled) {
			continue
		}
		var pe *ProtocolError
		if errors.As(err, &pe) {
			return err
		}
		if first == nil || isClosed(first) {
			first = err
		}
	}
	return first
}

// isClosed reports whether err says the connection was closed (by this
// side, typically: the other goroutine ended the session).
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}

func (n *Node) dial(ctx context.Context, addr string) (net.Conn, error) {
	if n.cfg.Dial != nil {
		return n.cfg.Dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// write is the writer: HELLO, then, once the peer's HELLO came, the bulk
// and the changes until ctx is done or a write fails. It reports whether
// the session came up.
func (s *outSession) write(ctx context.Context, helloc <-chan hello) (bool, error) {
	n := s.n
	var id [16]byte
	_, _ = rand.Read(id[:])
	if err := s.send(appendHello(s.small[:0], s.nextSeq(), hello{version: Version, limit: uint64(max(n.cfg.Limit, 0)), session: id, name: n.cfg.Name})); err != nil {
		return false, err
	}
	t := time.NewTimer(n.handshakeTimeout)
	defer t.Stop()
	var h hello
	select {
	case h = <-helloc:
	case <-ctx.Done():
		return false, nil
	case <-t.C:
		return false, protoErr(ReasonDead, "no HELLO within %v", n.handshakeTimeout)
	}
	s.l.mu.Lock()
	s.l.node = h.name
	s.l.lastErr = ""
	s.l.mu.Unlock()
	s.l.c.sessions.Add(1)
	n.log.Info("sync peer up", "dir", "out", "peer", s.l.addr, "name", s.l.name, "node", h.name)
	n.activate(s)
	defer n.deactivate(s)
	n.note("up out")

	if err := s.bulk(ctx); err != nil {
		return true, err
	}
	ka := time.NewTicker(n.cfg.KeepAlive)
	defer ka.Stop()
	// flushT fires when a flush held back by flushEvery is due.
	flushT := time.NewTimer(time.Hour)
	flushT.Stop()
	defer flushT.Stop()
	var lastFlush time.Time
	held := false
	for {
		if err := s.serveUrgent(); err != nil {
			return true, err
		}
		if d := s.sub.Dropped(); d != s.dropped {
			// Events were lost: only a bulk is sure to carry their entries.
			s.dropped = d
			s.l.c.resyncDropped.Add(1)
			s.mu.Lock()
			s.resync = true
			s.mu.Unlock()
		}
		s.mu.Lock()
		resync := s.resync
		s.resync = false
		s.mu.Unlock()
		if resync {
			if err := s.bulk(ctx); err != nil {
				return true, err
			}
		}
		if !held {
			if wait := n.cfg.FlushEvery - time.Since(lastFlush); wait > 0 && s.hasPending() {
				held = true
				flushT.Reset(wait)
			} else {
				if err := s.flushPending(); err != nil {
					return true, err
				}
				lastFlush = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return true, nil
		case <-flushT.C:
			held = false
		case ev := <-s.sub.Events():
			s.note(ev)
			s.drainEvents()
		case r := <-s.urgent:
			if err := s.sendDeferred(r); err != nil {
				return true, err
			}
		case <-s.wake:
		case <-ka.C:
			if time.Since(s.lastWrite) >= n.cfg.KeepAlive/2 {
				if err := s.send(appendKeepalive(s.small[:0], s.nextSeq())); err != nil {
					return true, err
				}
			}
		}
	}
}

func (s *outSession) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// send writes one frame, within DeadAfter.
func (s *outSession) send(b []byte) error {
	_ = s.tc.SetWriteDeadline(time.Now().Add(s.n.cfg.DeadAfter))
	s.ackMu.Lock()
	s.lastSeq = s.seq
	s.ackMu.Unlock()
	if _, err := s.tc.Write(b); err != nil {
		return err
	}
	s.lastWrite = time.Now()
	s.l.c.msgsSent.Add(1)
	s.l.c.bytesSent.Add(uint64(len(b)))
	return nil
}

// track records that frame seq will ask for an ack, and reports whether
// it may (there is room to remember it). Called before the frame is
// written, since its ack may come before the write returns.
func (s *outSession) track(f sent) bool {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	if s.inflight.full() {
		return false
	}
	s.inflight.push(f)
	if f.bulk {
		s.bulkSeq = f.seq
	}
	return true
}

// sendBatch sends bt as one frame asking for an ack (if it may) and
// empties it.
func (s *outSession) sendBatch(bt *batch, oldest int64, flags uint8) error {
	if bt.n == 0 {
		return nil
	}
	seq := s.nextSeq()
	if flags&flagBulk == 0 && s.track(sent{seq: seq, at: oldest}) {
		flags |= flagAck
	}
	err := s.send(bt.frame(seq, flags))
	if bt.typ == typeDelete {
		s.l.c.deletesSent.Add(uint64(bt.n))
	} else {
		s.l.c.recordsSent.Add(uint64(bt.n))
	}
	bt.reset()
	return err
}

// note adds an event's entry to the pending set.
func (s *outSession) note(ev conntrack.Event) {
	op := opRecord
	switch ev.Type {
	case conntrack.EventDestroy:
		op = opDelete
	case conntrack.EventNew:
		op |= opNew
	}
	s.mark(ev.Entry.Original, op, s.n.mono())
}

// hasPending reports whether the pending set holds anything.
func (s *outSession) hasPending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) > 0
}

// drainEvents takes the events already queued, without waiting.
func (s *outSession) drainEvents() {
	for range conntrack.DefaultEventQueue {
		select {
		case ev := <-s.sub.Events():
			s.note(ev)
		default:
			return
		}
	}
}

// mark adds k to the pending set: its record (op opRecord, sent as it is
// when sent: changes merge) or its deletion (opDelete, which drops a
// pending record). Past MaxPending keys the set is dropped and a bulk
// scheduled instead (deletions in it are lost: the peer's copies of
// those entries live until they time out there).
func (s *outSession) mark(k conntrack.Key, op uint8, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[k]
	if !ok {
		if len(s.pending) >= s.n.cfg.MaxPending {
			clear(s.pending)
			if !s.resync {
				s.resync = true
				s.l.c.resyncOverflow.Add(1)
			}
			return
		}
		p.at = at
		// (Not with deferral: Announce sends a new entry at once, so the
		// peer may have it.)
		p.fresh = op&opNew != 0 && s.n.cfg.Defer <= 0
	}
	switch {
	case op == opDelete && p.fresh:
		// Made and gone since the last flush: the peer never had it.
		delete(s.pending, k)
		s.l.c.coalesced.Add(1)
		return
	case op == opDelete:
		p.ops = opDelete
	default:
		p.ops |= opRecord
	}
	s.pending[k] = p
}

// poke wakes the writer.
func (s *outSession) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// flushPending sends the pending set: deletions first, then the records
// as they are now.
func (s *outSession) flushPending() error {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	p := s.pending
	s.pending, s.spare = s.spare, nil
	s.mu.Unlock()
	defer func() {
		clear(p)
		s.mu.Lock()
		s.spare = p
		s.mu.Unlock()
	}()

	oldest := int64(math.MaxInt64)
	for k, v := range p {
		if v.ops&opDelete == 0 {
			continue
		}
		if s.dels.full() {
			if err := s.sendBatch(s.dels, oldest, 0); err != nil {
				return err
			}
			oldest = math.MaxInt64
		}
		s.dels.addKey(k)
		oldest = min(oldest, v.at)
	}
	if err := s.sendBatch(s.dels, oldest, 0); err != nil {
		return err
	}
	oldest = math.MaxInt64
	now := s.n.cfg.Now()
	for k, v := range p {
		if v.ops&opRecord == 0 {
			continue
		}
		if s.recs.full() {
			if err := s.sendBatch(s.recs, oldest, 0); err != nil {
				return err
			}
			if err := s.serveUrgent(); err != nil {
				return err
			}
			oldest = math.MaxInt64
		}
		if !s.n.table.Export(k, now, (*conntrack.Record)(s.recs.next())) {
			// Gone since: its DESTROY is on its way.
			s.recs.unnext()
			continue
		}
		oldest = min(oldest, v.at)
	}
	return s.sendBatch(s.recs, oldest, 0)
}

// bulk sends the whole table: BULK_START, RECORDS marked bulk, BULK_END
// asking for an ack, which ends the bulk (state bulk-sending until then).
// Deferred records and events are served between frames.
func (s *outSession) bulk(ctx context.Context) error {
	n := s.n
	s.l.setState(StateBulkSending)
	start := n.mono()
	if err := s.send(appendValue(s.small[:0], typeBulkStart, 0, s.nextSeq(), uint64(n.table.Len()))); err != nil {
		return err
	}
	var count uint64
	var err error
	s.recs.reset()
	n.table.ExportAll(n.cfg.Now(), func(rec *conntrack.Record) bool {
		if s.recs.full() {
			if err = s.sendBatch(s.recs, 0, flagBulk); err == nil {
				err = s.serveUrgent()
			}
			s.drainEvents()
			if err != nil || ctx.Err() != nil {
				return false
			}
		}
		s.recs.addRecord(rec)
		count++
		return true
	})
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := s.sendBatch(s.recs, 0, flagBulk); err != nil {
		return err
	}
	seq := s.nextSeq()
	var flags uint8
	if s.track(sent{seq: seq, at: start, bulk: true, records: count}) {
		flags = flagAck
	}
	if err := s.send(appendValue(s.small[:0], typeBulkEnd, flags, seq, count)); err != nil {
		return err
	}
	if flags == 0 {
		s.bulkDone(start, count)
	}
	return nil
}

func (s *outSession) bulkDone(start int64, count uint64) {
	s.l.c.bulks.Add(1)
	s.l.c.lastBulk.Store(s.n.mono() - start)
	s.l.c.lastBulkRecords.Store(count)
	s.l.setState(StateConnected)
	s.n.note("bulk out")
}

// serveUrgent sends the deferred records waiting, if any.
func (s *outSession) serveUrgent() error {
	select {
	case r := <-s.urgent:
		return s.sendDeferred(r)
	default:
		return nil
	}
}

// sendDeferred sends r's record and every other deferred one waiting, in
// one frame that asks for an ack.
func (s *outSession) sendDeferred(r dref) error {
	n := s.n
	bt := s.urg
	bt.reset()
	var refs [MaxDeferred]dref
	nr := 0
	oldest := int64(math.MaxInt64)
	now := n.cfg.Now()
	for {
		if k, at, ok := n.defers.keyOf(r, s.idx); ok {
			if n.table.Export(k, now, (*conntrack.Record)(bt.next())) {
				refs[nr] = r
				nr++
				oldest = min(oldest, at)
			} else {
				bt.unnext()
				n.defers.fail(r, s.idx)
			}
		}
		if nr == len(refs) || bt.full() {
			break
		}
		select {
		case r = <-s.urgent:
			continue
		default:
		}
		break
	}
	if nr == 0 {
		return nil
	}
	seq := s.nextSeq()
	if !s.track(sent{seq: seq, at: oldest}) {
		// Too many frames unacked: the peer will not ack these in time.
		for _, r := range refs[:nr] {
			n.defers.fail(r, s.idx)
		}
		bt.reset()
		return nil
	}
	s.ackMu.Lock()
	for _, r := range refs[:nr] {
		if s.defs.full() {
			s.defs.pop() // long timed out: the deferral queue holds no more
		}
		s.defs.push(sentDefer{seq: seq, ref: r})
	}
	s.ackMu.Unlock()
	s.l.c.deferred.Add(uint64(nr))
	s.l.c.recordsSent.Add(uint64(nr))
	err := s.send(bt.frame(seq, flagAck))
	bt.reset()
	return err
}

// read is the reader: the peer's HELLO, then its ACKs and KEEPALIVEs.
func (s *outSession) read(helloc chan<- hello) error {
	fr := newFrameReader(s.tc, s.n.cfg.DeadAfter)
	for first := true; ; first = false {
		f, size, err := fr.next()
		if err != nil {
			return err
		}
		s.l.c.msgsRecv.Add(1)
		s.l.c.bytesRecv.Add(uint64(size))
		if first {
			if f.typ != typeHello {
				return protoErr(ReasonGarbage, "%s before HELLO", typeName(f.typ))
			}
			h := f.hello()
			if h.version != Version {
				return protoErr(ReasonVersion, "peer speaks sync protocol version %d, this node %d: run the same statewall version on both", h.version, Version)
			}
			helloc <- h
			continue
		}
		switch f.typ {
		case typeAck:
			if err := s.acked(f.value()); err != nil {
				return err
			}
		case typeKeepalive:
		default:
			return protoErr(ReasonGarbage, "%s from the receiving side", typeName(f.typ))
		}
	}
}

// acked handles the peer's ack of every frame up to seq: lag samples,
// the end of a bulk, deferrals.
func (s *outSession) acked(seq uint64) error {
	now := s.n.mono()
	s.ackMu.Lock()
	if seq <= s.lastAck || seq > s.lastSeq {
		last, sent := s.lastAck, s.lastSeq
		s.ackMu.Unlock()
		return protoErr(ReasonGarbage, "ACK of seq %d (last acked %d, last sent %d)", seq, last, sent)
	}
	s.lastAck = seq
	var bulk *sent
	var b sent
	for !s.inflight.empty() && s.inflight.peek().seq <= seq {
		f := s.inflight.pop()
		if f.bulk {
			if f.seq == s.bulkSeq {
				b, bulk = f, &b
			}
			continue
		}
		s.l.c.lag.observe(time.Duration(now - f.at))
	}
	var refs [MaxDeferred]dref
	nr := 0
	for !s.defs.empty() && s.defs.peek().seq <= seq && nr < len(refs) {
		refs[nr] = s.defs.pop().ref
		nr++
	}
	s.ackMu.Unlock()
	if bulk != nil {
		s.bulkDone(bulk.at, bulk.records)
	}
	for _, r := range refs[:nr] {
		if s.n.defers.ack(r, s.idx, now) {
			s.l.c.acked.Add(1)
		}
	}
	return nil
}

// finish releases what the session held: deferrals it was carrying fail
// (the peer may not have them).
func (s *outSession) finish() {
	for {
		select {
		case r := <-s.urgent:
			s.n.defers.fail(r, s.idx)
			continue
		default:
		}
		break
	}
	s.ackMu.Lock()
	var refs []dref
	for !s.defs.empty() {
		refs = append(refs, s.defs.pop().ref)
	}
	s.ackMu.Unlock()
	for _, r := range refs {
		s.n.defers.fail(r, s.idx)
	}
}

// ring is a fixed-size FIFO.
type ring[T any] struct {
	buf        []T
	head, size int
}

func newRing[T any](n int) ring[T] { return ring[T]{buf: make([]T, n)} }

func (r *ring[T]) full() bool  { return r.size == len(r.buf) }
func (r *ring[T]) empty() bool { return r.size == 0 }
func (r *ring[T]) peek() *T    { return &r.buf[r.head] }

func (r *ring[T]) push(v T) {
	r.buf[(r.head+r.size)%len(r.buf)] = v
	r.size++
}

func (r *ring[T]) pop() T {
	v := r.buf[r.head]
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	return v
}
