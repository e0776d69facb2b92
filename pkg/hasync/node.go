package hasync

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
)

// Config configures a Node. The zero value of every field but Name, Now
// and the TLS material means its default.
type Config struct {
	// Name is this node's name, said in HELLO and shown in the peer's
	// stats and logs: normally its certificate's common name. Required,
	// 1 to 255 bytes.
	Name string
	// Listen is the TCP address peers connect to, to send their changes
	// ("198.18.0.1:7946"). Empty: accept no peer (unless Listener is
	// set): this node only sends.
	Listen string
	// Listener, if set, is used instead of Listen: an already open
	// listener (socket activation; tests use in-memory ones).
	Listener net.Listener
	// Peers are the addresses this node dials to send its changes to
	// (at most 64). Empty: this node only receives.
	Peers []string
	// Dial, if set, replaces net.Dialer's DialContext for Peers.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// TLS is the node's certificate and the sync CA, as LoadTLS makes
	// it; if nil, New loads CertFile, KeyFile and CAFile with LoadTLS.
	// New derives its own configurations from it (TLS 1.3 only, client
	// certificates required): see transport.go.
	TLS                       *tls.Config
	CertFile, KeyFile, CAFile string
	// AllowedPeers, if set, are the certificate names (common name or
	// DNS SAN) this node talks to, both ways; others are refused
	// (not_allowed). Empty: any certificate the CA signed.
	AllowedPeers []string

	// Limit is the conntrack table's limit (conntrack.Config.Limit),
	// said in HELLO so that a peer with a smaller table warns that it
	// may refuse records (full). 0: not said.
	Limit int

	// DirtyEvery is how often entries that packets changed without an
	// event (window edges, timers) are sent: 250 ms when 0. pfsync sends
	// within 1 s.
	DirtyEvery time.Duration
	// FlushEvery is the shortest time between two frames of changes
	// while changes keep coming (1 ms when 0; see defaultFlushEvery): the
	// changes of that time go out together, merged.
	FlushEvery time.Duration
	// KeepAlive is how often a quiet session sends KEEPALIVE: 1 s when 0.
	KeepAlive time.Duration
	// DeadAfter ends a session that heard nothing, or could write
	// nothing, for this long: 3 s when 0.
	DeadAfter time.Duration
	// Defer is how long Announce waits for the peers' acks: 0 means off
	// (Announce answers false at once). pfsync waits 20 ms.
	Defer time.Duration
	// MaxQueue is the length of each peer's event queue
	// (conntrack.DefaultEventQueue when 0). Events dropped because it
	// was full make a bulk resync (resyncs_dropped).
	MaxQueue int
	// MaxPending bounds the entries waiting to be sent to each peer
	// (65536 when 0); past it the set is dropped and a bulk resync
	// scheduled (resyncs_overflow).
	MaxPending int

	// Log receives the node's log; nil discards it.
	Log *slog.Logger
	// Now is the conntrack table's clock (nanoseconds, monotonic, the
	// now the daemon passes to Track). Required.
	Now func() int64
}

const (
	defaultDirtyEvery = 250 * time.Millisecond
	defaultKeepAlive  = time.Second
	defaultDeadAfter  = 3 * time.Second
	defaultMaxPending = 65536
	maxPeers          = 64
	// maxHandshakes bounds the handshakes under way at once: each holds
	// a goroutine and TLS state for a peer not yet authenticated.
	maxHandshakes = 16
	// maxInbound bounds the sessions peers have open to this node (one
	// per certificate name; a new one from the same name replaces the
	// old one).
	maxInbound = 64
	// handshakeTimeout bounds a TLS handshake and the HELLO exchange.
	handshakeTimeout = 5 * time.Second
	minBackoff       = 100 * time.Millisecond
	maxBackoff       = 2 * time.Second
)

// Node syncs a conntrack table with its peers. Its methods are safe for
// concurrent use.
type Node struct {
	cfg     Config
	table   *conntrack.Table
	log     *slog.Logger
	server  *tls.Config
	client  *tls.Config
	epoch   time.Time
	refused reasonCounts

	outs []*link // one per Config.Peers, by index

	inMu sync.Mutex
	ins  map[string]*link // by certificate name

	// active are the outbound sessions past HELLO, for Announce and the
	// dirty export (copied on write, read with one load).
	activeMu sync.Mutex
	active   atomic.Pointer[[]*outSession]

	defers     deferQueue
	handshakes chan struct{} // semaphore: maxHandshakes

	// Timings that tests shorten.
	handshakeTimeout, minBackoff, maxBackoff time.Duration
	// hook, if set (tests), hears what happens: see note.
	hook func(ev string)

	runMu   sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// New checks cfg and returns a Node for table; Run starts it.
func New(cfg Config, table *conntrack.Table) (*Node, error) {
	if table == nil {
		return nil, errors.New("hasync: no table")
	}
	if cfg.Now == nil {
		return nil, errors.New("hasync: Config.Now is required (the conntrack table's clock)")
	}
	if cfg.Name == "" || len(cfg.Name) > 255 {
		return nil, errors.New("hasync: Config.Name must be 1 to 255 bytes")
	}
	if len(cfg.Peers) > maxPeers {
		return nil, fmt.Errorf("hasync: %d peers; at most %d", len(cfg.Peers), maxPeers)
	}
	for _, p := range cfg.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("hasync: peer %q: %w", p, err)
		}
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = defaultFlushEvery
	}
	if cfg.DirtyEvery <= 0 {
		cfg.DirtyEvery = defaultDirtyEvery
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = defaultKeepAlive
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = defaultDeadAfter
	}
	if cfg.DeadAfter <= cfg.KeepAlive {
		return nil, fmt.Errorf("hasync: DeadAfter (%v) must be longer than KeepAlive (%v)", cfg.DeadAfter, cfg.KeepAlive)
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = defaultMaxPending
	}
	if cfg.Defer < 0 {
		cfg.Defer = 0
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := cfg.TLS
	if base == nil && (cfg.CertFile != "" || cfg.KeyFile != "" || cfg.CAFile != "") {
		var err error
		if base, err = LoadTLS(cfg.CertFile, cfg.KeyFile, cfg.CAFile); err != nil {
			return nil, err
		}
	}
	allowed := make(map[string]bool, len(cfg.AllowedPeers))
	for _, a := range cfg.AllowedPeers {
		allowed[strings.ToLower(a)] = true
	}
	server, client, err := makeTLS(base, allowed)
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, table: table, log: log.With("sync", cfg.Name), server: server, client: client,
		epoch:      time.Now(),
		ins:        make(map[string]*link),
		handshakes: make(chan struct{}, maxHandshakes),
		done:       make(chan struct{}),

		handshakeTimeout: handshakeTimeout, minBackoff: minBackoff, maxBackoff: maxBackoff,
	}
	for _, p := range cfg.Peers {
		n.outs = append(n.outs, &link{dir: Out, addr: p, state: StateDown, since: n.epoch})
	}
	n.defers.init(n)
	return n, nil
}

// mono is the node's own monotonic clock in ns, for lag and deferrals:
// wall time on this node, not the table's clock (which the caller may
// drive from packet timestamps).
func (n *Node) mono() int64 { return int64(time.Since(n.epoch)) }

// note tells the test hook what happened, in words joined by spaces.
// Without a hook (outside tests) it costs a nil check.
func (n *Node) note(words ...string) {
	if n.hook != nil {
		n.hook(strings.Join(words, " "))
	}
}

// Run accepts peers (Listen), dials every one of Peers (again after a
// failure, backing off from 100 ms to 2 s), sends this node's changes and
// installs the peers', until ctx is done or Close is called. It returns
// an error only if it cannot start (a bad listen address, Run called
// twice).
func (n *Node) Run(ctx context.Context) error {
	n.runMu.Lock()
	if n.started {
		n.runMu.Unlock()
		return errors.New("hasync: Run called twice")
	}
	n.started = true
	if n.closed {
		n.runMu.Unlock()
		close(n.done)
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	n.runMu.Unlock()
	defer close(n.done)
	defer cancel()

	ln := n.cfg.Listener
	if ln == nil && n.cfg.Listen != "" {
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", n.cfg.Listen)
		if err != nil {
			return fmt.Errorf("hasync: %w", err)
		}
		ln = l
	}
	var wg sync.WaitGroup
	if ln != nil {
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		n.log.Info("accepting peers", "addr", ln.Addr().String())
		wg.Go(func() { n.accept(ctx, ln, &wg) })
	}
	for i, l := range n.outs {
		wg.Go(func() { n.dialLoop(ctx, i, l) })
	}
	wg.Go(func() { n.housekeep(ctx) })
	wg.Go(func() { n.defers.run(ctx) })
	<-ctx.Done()
	wg.Wait()
	n.defers.releaseAll()
	return nil
}

// Close stops Run and waits for it to return. Deferrals still waiting
// are released (done(false)). It may be called more than once, and
// before Run (which then returns at once).
func (n *Node) Close() {
	n.runMu.Lock()
	n.closed = true
	cancel, started := n.cancel, n.started
	n.runMu.Unlock()
	if cancel != nil {
		cancel()
	}
	if started {
		<-n.done
	}
}

// links returns every link, Out ones first.
func (n *Node) links() []*link {
	ls := append([]*link(nil), n.outs...)
	n.inMu.Lock()
	for _, l := range n.ins {
		ls = append(ls, l)
	}
	n.inMu.Unlock()
	return ls
}

// accept takes peers' connections until ln is closed.
func (n *Node) accept(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	pause := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, say: wait a little, as net/http does.
			n.log.Warn("accept", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, time.Second)
			continue
		}
		pause = 5 * time.Millisecond
		select {
		case n.handshakes <- struct{}{}:
		default:
			n.refuse(ReasonBusy, c.RemoteAddr(), errors.New("too many handshakes under way"))
			c.Close()
			continue
		}
		wg.Go(func() { n.serveIn(ctx, c) })
	}
}

// refuse counts and logs a connection turned away before its session.
func (n *Node) refuse(r Reason, addr net.Addr, err error) {
	n.refused[r].Add(1)
	lvl := slog.LevelWarn
	if r == ReasonVersion {
		lvl = slog.LevelError
	}
	n.log.Log(context.Background(), lvl, "peer refused", "reason", r.String(), "remote", addrString(addr), "err", err)
	n.note("refused", r.String())
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// endSession counts and logs how a session ended: a breach or a dead
// peer is a cut-off, counted by reason; the node stopping (ctx done) or
// the peer closing is not.
func (n *Node) endSession(ctx context.Context, l *link, err error) {
	var pe *ProtocolError
	var ne net.Error
	r := Reason(numReasons)
	switch {
	case ctx.Err() != nil || err == nil:
		return
	case errors.As(err, &pe):
		r = pe.Reason
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		r = ReasonDead
	}
	if r == numReasons {
		// The peer closed, or the connection broke: not a breach.
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isClosed(err) {
			n.logOnce(l, slog.LevelInfo, "sync session ended", err)
		} else {
			n.logOnce(l, slog.LevelInfo, "sync session closed by the peer", err)
		}
		n.note("ended", l.dir.String())
		return
	}
	l.c.cutOff[r].Add(1)
	lvl := slog.LevelWarn
	if r == ReasonVersion {
		lvl = slog.LevelError
	}
	n.logOnce(l, lvl, "sync session cut off", err, "reason", r.String())
	n.note("cutoff", l.dir.String(), r.String())
}

// logOnce logs a link's failure, unless it failed the same way last
// time: a peer that stays down is logged once, not every retry.
func (n *Node) logOnce(l *link, lvl slog.Level, msg string, err error, args ...any) {
	l.mu.Lock()
	s := fmt.Sprint(err)
	repeat := l.lastErr == s
	l.lastErr = s
	addr, name := l.addr, l.name
	l.mu.Unlock()
	if repeat {
		lvl = slog.LevelDebug
	}
	args = append(args, "dir", l.dir.String(), "peer", addr, "name", name, "err", err)
	n.log.Log(context.Background(), lvl, msg, args...)
}

// dialLoop keeps a session to peer i up until ctx is done.
func (n *Node) dialLoop(ctx context.Context, i int, l *link) {
	backoff := n.minBackoff
	for ctx.Err() == nil {
		l.setState(StateConnecting)
		up := n.runOut(ctx, i, l)
		l.setState(StateDown)
		if ctx.Err() != nil {
			return
		}
		if up {
			backoff = n.minBackoff
		}
		// Up to a quarter of jitter, so that two nodes restarted together
		// do not retry in step.
		wait := backoff + rand.N(backoff/4+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, n.maxBackoff)
	}
}

// housekeep sends dirty entries every DirtyEvery, and sweeps the table
// every second, while a session is up: DESTROY events of expired entries
// come only when they are reaped.
func (n *Node) housekeep(ctx context.Context) {
	dirty := time.NewTicker(n.cfg.DirtyEvery)
	defer dirty.Stop()
	sweep := time.NewTicker(conntrack.SweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-dirty.C:
			n.sendDirty()
		case <-sweep.C:
			if ss := n.active.Load(); ss != nil && len(*ss) > 0 {
				n.table.Sweep(n.cfg.Now())
			}
		}
	}
}

// sendDirty hands the entries packets changed since the last call to
// every active outbound session. With none, it leaves them dirty: the
// next session starts with a bulk anyway.
func (n *Node) sendDirty() {
	ss := n.active.Load()
	if ss == nil || len(*ss) == 0 {
		return
	}
	at := n.mono()
	n.table.ExportDirty(n.cfg.Now(), func(rec *conntrack.Record) bool {
		k, err := rec.Key()
		if err != nil {
			return true // cannot happen: the table made it
		}
		for _, s := range *ss {
			s.mark(k, opRecord, at)
		}
		return true
	})
	for _, s := range *ss {
		s.poke()
	}
}

// activate makes s an active session: Announce and sendDirty use it.
func (n *Node) activate(s *outSession) {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	var next []*outSession
	if cur := n.active.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, s)
	n.active.Store(&next)
}

func (n *Node) deactivate(s *outSession) {
	n.activeMu.Lock()
	defer n.activeMu.Unlock()
	cur := n.active.Load()
	if cur == nil {
		return
	}
	var next []*outSession
	for _, o := range *cur {
		if o != s {
			next = append(next, o)
		}
	}
	n.active.Store(&next)
}

// inLink returns the link of inbound sessions from the peer with the
// certificate name, making it if new; nil when there are maxInbound
// already.
func (n *Node) inLink(name string) *link {
	n.inMu.Lock()
	defer n.inMu.Unlock()
	l := n.ins[name]
	if l == nil {
		if len(n.ins) >= maxInbound {
			return nil
		}
		l = &link{dir: In, name: name, state: StateDown, since: time.Now()}
		n.ins[name] = l
	}
	return l
}
