package hasync

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/conntrack"
)

// Every test runs on in-memory connections (net.Pipe): no socket, not
// even on loopback. Addresses are names in 198.18.0.0/15 (RFC 2544),
// only ever looked up in memNet.

// waitLimit bounds every wait: a test that waits longer has failed.
const waitLimit = 10 * time.Second

// keysDir holds the certificates of TestMain: CA "good" with nodes a, b,
// c and evil; CA "other" with node a (a wrong-CA client).
var keysDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hasync-keys-")
	if err != nil {
		panic(err)
	}
	keysDir = dir
	if err := GenerateKeys(filepath.Join(dir, "good"), []string{"a", "b", "c", "evil"}); err != nil {
		panic(err)
	}
	if err := GenerateKeys(filepath.Join(dir, "other"), []string{"a"}); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tlsFor loads node's certificate from CA ca ("good" or "other"), with
// that CA as the one it trusts.
func tlsFor(tb testing.TB, ca, node string) *tls.Config {
	tb.Helper()
	d := filepath.Join(keysDir, ca)
	cfg, err := LoadTLS(filepath.Join(d, node+".crt"), filepath.Join(d, node+".key"), filepath.Join(d, "ca.crt"))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// memNet is an in-memory network: Listen registers an address, Dial
// connects to it with a net.Pipe.
type memNet struct {
	mu sync.Mutex
	ls map[string]*memListener
}

func newMemNet() *memNet { return &memNet{ls: map[string]*memListener{}} }

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

// memConn is one end of a pipe with the addresses of a connection.
type memConn struct {
	net.Conn
	local, remote memAddr
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }

type memListener struct {
	m    *memNet
	addr string
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (m *memNet) Listen(addr string) *memListener {
	l := &memListener{m: m, addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
	m.mu.Lock()
	m.ls[addr] = l
	m.mu.Unlock()
	return l
}

var dials atomic.Uint32

func (m *memNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	m.mu.Lock()
	l := m.ls[addr]
	m.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	c1, c2 := net.Pipe()
	from := memAddr(fmt.Sprintf("198.18.1.%d:%d", dials.Add(1)%250+1, 40000))
	select {
	case l.ch <- &memConn{Conn: c2, local: memAddr(addr), remote: from}:
		return &memConn{Conn: c1, local: from, remote: memAddr(addr)}, nil
	case <-l.done:
	case <-ctx.Done():
	}
	c1.Close()
	c2.Close()
	return nil, fmt.Errorf("dial %s: connection refused", addr)
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.m.mu.Lock()
		if l.m.ls[l.addr] == l {
			delete(l.m.ls, l.addr)
		}
		l.m.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr(l.addr) }

// notes collects what a node's hook heard, for tests to wait on.
type notes struct {
	mu     sync.Mutex
	counts map[string]int
	all    []string
	wake   chan struct{}
}

func newNotes() *notes { return &notes{counts: map[string]int{}, wake: make(chan struct{})} }

func (n *notes) hook(ev string) {
	n.mu.Lock()
	n.counts[ev]++
	n.all = append(n.all, ev)
	close(n.wake)
	n.wake = make(chan struct{})
	n.mu.Unlock()
}

// wait waits until ev was heard at least count times.
func (n *notes) wait(tb testing.TB, ev string, count int) {
	tb.Helper()
	deadline := time.After(waitLimit)
	for {
		n.mu.Lock()
		got, wake := n.counts[ev], n.wake
		n.mu.Unlock()
		if got >= count {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			n.mu.Lock()
			heard := append([]string(nil), n.all...)
			n.mu.Unlock()
			tb.Fatalf("waited %v for %q ×%d; heard %q", waitLimit, ev, count, heard)
		}
	}
}

// tnode is a node under test: its table, the table's clock, its notes.
type tnode struct {
	tb    testing.TB
	name  string
	addr  string
	table *conntrack.Table
	clock atomic.Int64
	node  *Node
	notes *notes
	// sub wakes waitTable on every change of the table.
	sub  *conntrack.Subscription
	done chan error
}

// addrOf is the test address of node name.
func addrOf(name string) string {
	switch name {
	case "a":
		return "198.18.0.1:7946"
	case "b":
		return "198.18.0.2:7946"
	case "c":
		return "198.18.0.3:7946"
	}
	return "198.18.0.99:7946"
}

// startNode starts node name (its certificate from CA "good") on m,
// listening on addrOf(name) and dialling peers; mod may change the
// Config first. The node stops at the end of the test.
func startNode(tb testing.TB, m *memNet, name string, peers []string, mod func(*Config)) *tnode {
	tb.Helper()
	tn := &tnode{tb: tb, name: name, addr: addrOf(name), notes: newNotes(), done: make(chan error, 1)}
	tn.clock.Store(int64(time.Hour))
	tn.table = conntrack.New(conntrack.Config{Seed: 1, Limit: 1 << 20})
	tn.sub = tn.table.Subscribe(64, nil)
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, addrOf(p))
	}
	cfg := Config{
		Name:      name,
		Listener:  m.Listen(tn.addr),
		Peers:     addrs,
		Dial:      m.Dial,
		TLS:       tlsFor(tb, "good", name),
		Now:       tn.clock.Load,
		Log:       testLogger(tb, name),
		DeadAfter: waitLimit,
		KeepAlive: time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg, tn.table)
	if err != nil {
		tb.Fatal(err)
	}
	n.hook = tn.notes.hook
	n.minBackoff, n.maxBackoff = time.Millisecond, 20*time.Millisecond
	tn.node = n
	go func() { tn.done <- n.Run(context.Background()) }()
	tb.Cleanup(tn.stop)
	return tn
}

// stop stops the node (again: a no-op).
func (tn *tnode) stop() {
	tn.node.Close()
	if err := <-tn.done; err != nil {
		tn.tb.Errorf("%s: Run: %v", tn.name, err)
	}
	tn.done <- nil
	tn.sub.Close()
}

// see tracks a packet on the node's table at its clock and commits it
// when it may start a connection, as the daemon does when rules accept.
func (tn *tnode) see(line string) conntrack.Key {
	tn.tb.Helper()
	p := pkttest.MustFields(tn.tb, line)
	now := tn.clock.Load()
	r := tn.table.Track(p, now)
	if r.Label == conntrack.LabelNew {
		if !tn.table.Commit(p, &r, now) {
			tn.tb.Fatalf("%s: %s: not committed", tn.name, line)
		}
	} else if r.Label == conntrack.LabelInvalid {
		tn.tb.Fatalf("%s: %s: invalid (%s)", tn.name, line, r.ReasonString())
	}
	return conntrack.KeyOf(p)
}

// waitTable waits until cond holds, looking again at every change of
// the table (its events) and after every frame the node applied (a
// merge of counters or windows makes no event), never polling on a
// timer.
func (tn *tnode) waitTable(what string, cond func() bool) {
	tn.tb.Helper()
	deadline := time.After(waitLimit)
	for {
		tn.notes.mu.Lock()
		wake := tn.notes.wake
		tn.notes.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-tn.sub.Events():
		case <-wake:
		case <-deadline:
			tn.tb.Fatalf("%s: waited %v for %s", tn.name, waitLimit, what)
		}
	}
}

// entry returns the node's entry of k.
func (tn *tnode) entry(k conntrack.Key) (conntrack.EntryInfo, bool) {
	return tn.table.Get(k, tn.clock.Load())
}

// link returns the node's link of direction dir (the only one).
func (tn *tnode) link(dir Direction, name string) PeerStats {
	tn.tb.Helper()
	for _, p := range tn.node.Stats().Peers {
		if p.Direction == dir && (name == "" || p.Name == name) {
			return p
		}
	}
	tn.tb.Fatalf("%s: no %s link %q in %+v", tn.name, dir, name, tn.node.Stats().Peers)
	return PeerStats{}
}

// testLogger logs through t.Log, with the node's name.
func testLogger(tb testing.TB, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(b []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// rawPeer is a hand-driven peer: a TLS connection to or from a node,
// frames written as the test says, and frames read into a channel
// (unbuffered: while the test does not take them, the peer reads
// nothing, and a net.Pipe writer to it blocks).
type rawPeer struct {
	tb     testing.TB
	raw    net.Conn
	tc     *tls.Conn
	seq    uint64
	frames chan rawFrame
	err    chan error
}

type rawFrame struct {
	typ, flags uint8
	seq        uint64
	body       []byte
}

// dialRaw connects to a node as a client with cfg (nil: plain TCP, no
// TLS) and starts reading.
func dialRaw(tb testing.TB, m *memNet, addr string, cfg *tls.Config) *rawPeer {
	tb.Helper()
	raw, err := m.Dial(context.Background(), "tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &rawPeer{tb: tb, raw: raw, frames: make(chan rawFrame), err: make(chan error, 1)}
	if cfg != nil {
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = "b" // the node every raw peer dials
		}
		p.tc = tls.Client(raw, cfg)
	}
	go p.read()
	tb.Cleanup(func() { raw.Close() })
	return p
}

// acceptRaw takes one connection on l as the TLS server with cfg.
func acceptRaw(tb testing.TB, l net.Listener, cfg *tls.Config) *rawPeer {
	tb.Helper()
	raw, err := l.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	scfg := cfg.Clone()
	scfg.ClientAuth = tls.RequireAndVerifyClientCert
	scfg.SessionTicketsDisabled = true
	p := &rawPeer{tb: tb, raw: raw, tc: tls.Server(raw, scfg), frames: make(chan rawFrame), err: make(chan error, 1)}
	go p.read()
	tb.Cleanup(func() { raw.Close() })
	return p
}

func (p *rawPeer) conn() io.ReadWriter {
	if p.tc != nil {
		return p.tc
	}
	return p.raw
}

// read reads frames until the connection breaks.
func (p *rawPeer) read() {
	var r io.Reader = p.conn()
	hdr := make([]byte, headerSize)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			p.err <- err
			close(p.frames)
			return
		}
		h, err := parseHeader(hdr)
		if err != nil {
			p.err <- err
			close(p.frames)
			return
		}
		body := make([]byte, h.length)
		if _, err := io.ReadFull(r, body); err != nil {
			p.err <- err
			close(p.frames)
			return
		}
		p.frames <- rawFrame{typ: h.typ, flags: h.flags, seq: h.seq, body: body}
	}
}

// next returns the next frame read.
func (p *rawPeer) next() rawFrame {
	p.tb.Helper()
	select {
	case f, ok := <-p.frames:
		if !ok {
			p.tb.Fatalf("raw peer: connection ended: %v", <-p.err)
		}
		return f
	case <-time.After(waitLimit):
		p.tb.Fatal("raw peer: no frame")
	}
	return rawFrame{}
}

// until reads frames up to one of type typ, and returns it.
func (p *rawPeer) until(typ uint8) rawFrame {
	p.tb.Helper()
	for {
		if f := p.next(); f.typ == typ {
			return f
		}
	}
}

// drain reads and drops every frame from now on.
func (p *rawPeer) drain() {
	go func() {
		for range p.frames {
		}
	}()
}

// closed waits until the connection ends and returns why; a frame
// that comes first fails the test: the node sent something.
func (p *rawPeer) closed() error {
	p.tb.Helper()
	for {
		select {
		case f, ok := <-p.frames:
			if !ok {
				return <-p.err
			}
			p.tb.Errorf("raw peer: the node sent %s", typeName(f.typ))
		case <-time.After(waitLimit):
			p.tb.Fatal("raw peer: connection still open")
			return nil
		}
	}
}

func (p *rawPeer) write(b []byte) error {
	_, err := p.conn().Write(b)
	return err
}

func (p *rawPeer) nextSeq() uint64 {
	p.seq++
	return p.seq
}

// hello sends a HELLO of the given version.
func (p *rawPeer) hello(name string, version uint8) {
	p.tb.Helper()
	if err := p.write(appendHello(nil, p.nextSeq(), hello{version: version, name: name})); err != nil {
		p.tb.Fatal(err)
	}
}
