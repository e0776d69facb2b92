package hasync

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
)

// The receiving side: a session a peer dialled, which carries the peer's
// changes to this node. One goroutine reads the frames, applies them to
// the table as they come, and acks; another sends KEEPALIVEs while the
// session is quiet. Nothing queues what the peer sends: the reader's one
// buffer (MaxFrame) and the ack (one seq) are all a peer can make this
// node hold, and a peer that does not read its acks blocks its own
// session (cut off after DeadAfter), nobody else's.

type inSession struct {
	n      *Node
	l      *link
	tc     *tls.Conn
	fr     *frameReader
	remote net.Addr

	wmu       sync.Mutex
	seq       uint64
	lastWrite time.Time
	wbuf      []byte

	// The reader's own.
	ackTo   uint64 // the last applied frame that asked for an ack
	acked   uint64 // the last ack sent
	inBulk  bool
	bulkAt  time.Time
	bulkGot uint64
}

// serveIn authenticates a peer's connection and runs its session.
// Precondition: it holds a place in n.handshakes, which it gives back
// once the peer's HELLO came (or did not): a connection holds one until
// it is a session of a known peer.
func (n *Node) serveIn(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	held := true
	release := func() {
		if held {
			<-n.handshakes
			held = false
		}
	}
	defer release()
	tc := tls.Server(raw, n.server)
	name, r, err := n.handshake(ctx, raw, tc)
	if err != nil {
		if ctx.Err() == nil {
			n.refuse(r, raw.RemoteAddr(), err)
		}
		return
	}
	runCtx := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	s := &inSession{n: n, tc: tc, fr: newFrameReader(tc, n.cfg.DeadAfter), remote: raw.RemoteAddr(), wbuf: make([]byte, 0, 64+255)}
	h, err := s.hello(name)
	release()
	if err != nil {
		if ctx.Err() == nil {
			r := ReasonHandshake
			var pe *ProtocolError
			if errors.As(err, &pe) {
				r = pe.Reason
			}
			n.refuse(r, raw.RemoteAddr(), err)
		}
		return
	}
	l := n.inLink(name)
	if l == nil {
		n.refuse(ReasonBusy, raw.RemoteAddr(), errors.New("too many peers"))
		return
	}
	s.l = l
	// A peer that connects again replaces its old session: it
	// restarted, and the old connection may not know yet.
	l.mu.Lock()
	if l.cancel != nil {
		l.cancel()
	}
	l.cancel = cancel
	l.gen++
	gen := l.gen
	l.addr, l.node, l.lastErr = addrString(raw.RemoteAddr()), h.name, ""
	l.mu.Unlock()
	l.c.sessions.Add(1)
	l.c.msgsRecv.Add(1)
	l.c.bytesRecv.Add(uint64(headerSize + helloFixed + len(h.name)))
	l.c.msgsSent.Add(1)
	l.c.bytesSent.Add(uint64(headerSize + helloFixed + len(n.cfg.Name)))
	l.setState(StateConnected)
	n.log.Info("sync peer up", "dir", "in", "peer", l.addr, "name", name, "node", h.name)
	n.note("up in")

	var wg sync.WaitGroup
	wg.Go(func() { s.keepalive(ctx) })
	err = s.run()
	cancel()
	raw.Close()
	wg.Wait()
	n.endSession(runCtx, l, err)
	l.mu.Lock()
	if l.gen == gen {
		// Not replaced by a newer session of the same peer.
		l.cancel = nil
		l.state, l.since = StateDown, time.Now()
	}
	l.mu.Unlock()
}

// hello reads the peer's HELLO and answers with this node's. The peer's
// frames before it are not read.
func (s *inSession) hello(name string) (hello, error) {
	n := s.n
	f, _, err := s.fr.next()
	if err != nil {
		return hello{}, err
	}
	if f.typ != typeHello {
		return hello{}, protoErr(ReasonGarbage, "%s before HELLO", typeName(f.typ))
	}
	h := f.hello()
	if h.version != Version {
		return hello{}, protoErr(ReasonVersion, "peer %s speaks sync protocol version %d, this node %d: run the same statewall version on both", name, h.version, Version)
	}
	if h.limit > 0 && n.cfg.Limit > 0 && h.limit > uint64(n.cfg.Limit) {
		n.log.Warn("peer's conntrack table is larger than this node's: its records may find this table full",
			"peer", name, "peer_limit", h.limit, "limit", n.cfg.Limit)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return h, s.writeLocked(appendHello(s.wbuf[:0], s.nextSeq(), hello{version: Version, limit: uint64(max(n.cfg.Limit, 0)), session: id, name: n.cfg.Name}))
}

func (s *inSession) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// writeLocked writes one frame within DeadAfter. Precondition: s.wmu is
// held.
func (s *inSession) writeLocked(b []byte) error {
	_ = s.tc.SetWriteDeadline(time.Now().Add(s.n.cfg.DeadAfter))
	if _, err := s.tc.Write(b); err != nil {
		return err
	}
	s.lastWrite = time.Now()
	if s.l != nil {
		s.l.c.msgsSent.Add(1)
		s.l.c.bytesSent.Add(uint64(len(b)))
	}
	return nil
}

// keepalive sends a KEEPALIVE whenever nothing was written for half of
// KeepAlive, until ctx is done.
func (s *inSession) keepalive(ctx context.Context) {
	t := time.NewTicker(s.n.cfg.KeepAlive)
	defer t.Stop()
	var buf [headerSize]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.wmu.Lock()
		var err error
		if time.Since(s.lastWrite) >= s.n.cfg.KeepAlive/2 {
			err = s.writeLocked(appendKeepalive(buf[:0], s.nextSeq()))
		}
		s.wmu.Unlock()
		if err != nil {
			return // the reader will find the connection broken too
		}
	}
}

// flushAck sends the ack of every frame applied, if one is owed.
func (s *inSession) flushAck() error {
	if s.ackTo == s.acked {
		return nil
	}
	s.wmu.Lock()
	var buf [headerSize + 8]byte
	err := s.writeLocked(appendValue(buf[:0], typeAck, 0, s.nextSeq(), s.ackTo))
	s.wmu.Unlock()
	s.acked = s.ackTo
	return err
}

// run reads and applies the peer's frames until the session breaks.
func (s *inSession) run() error {
	n, l := s.n, s.l
	for {
		// Acks go out when the next frame is not here yet: one ack for a
		// burst, and none waits on a read that may block.
		if !s.fr.ready() {
			if err := s.flushAck(); err != nil {
				return err
			}
		}
		f, size, err := s.fr.next()
		if err != nil {
			return err
		}
		l.c.msgsRecv.Add(1)
		l.c.bytesRecv.Add(uint64(size))
		switch f.typ {
		case typeRecords:
			if f.flags&flagBulk != 0 {
				if !s.inBulk {
					return protoErr(ReasonGarbage, "bulk RECORDS outside a bulk")
				}
				s.bulkGot += uint64(f.count())
			}
			if err := s.install(&f); err != nil {
				return err
			}
		case typeDelete:
			now := n.cfg.Now()
			for i := range f.count() {
				k, err := f.key(i)
				if err != nil {
					return protoErr(ReasonMalformed, "DELETE key %d: %v", i, err)
				}
				l.c.delRecv.Add(1)
				if n.table.Remove(k, now) {
					l.c.remove.Add(1)
				}
			}
		case typeBulkStart:
			if s.inBulk {
				return protoErr(ReasonGarbage, "BULK_START inside a bulk")
			}
			s.inBulk, s.bulkAt, s.bulkGot = true, time.Now(), 0
			l.setState(StateBulkReceiving)
		case typeBulkEnd:
			if !s.inBulk {
				return protoErr(ReasonGarbage, "BULK_END outside a bulk")
			}
			if v := f.value(); v != s.bulkGot {
				return protoErr(ReasonGarbage, "BULK_END says %d records, the bulk had %d", v, s.bulkGot)
			}
			s.inBulk = false
			l.c.bulks.Add(1)
			l.c.lastBulk.Store(int64(time.Since(s.bulkAt)))
			l.c.lastBulkRecords.Store(s.bulkGot)
			l.setState(StateConnected)
			n.note("bulk in")
		case typeKeepalive:
		default:
			return protoErr(ReasonGarbage, "%s from the sending side", typeName(f.typ))
		}
		if f.flags&flagAck != 0 {
			s.ackTo = f.seq
		}
		n.note("applied")
	}
}

// install installs a RECORDS frame's records. A record conntrack refuses
// cuts the session off: the peer is broken or hostile.
func (s *inSession) install(f *frame) error {
	n, c := s.n, &s.l.c
	now := n.cfg.Now()
	for i := range f.count() {
		res, err := n.table.Install(f.record(i), now)
		if err != nil {
			return protoErr(ReasonMalformed, "record %d: %v", i, err)
		}
		switch res {
		case conntrack.Installed:
			c.installed.Add(1)
		case conntrack.Merged:
			c.merged.Add(1)
		case conntrack.Stale:
			c.stale.Add(1)
		case conntrack.Full:
			c.full.Add(1)
		}
	}
	return nil
}
