package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/hasync"
	"github.com/statewall/statewall/pkg/nfq"
)

// State sync with other statewall nodes (package hasync): this node sends
// its connection table's changes to its peers and installs theirs, so that
// after a failover (keepalived moves the addresses; statewall needs no
// part in that) the peer that takes over knows every connection, and
// with two active nodes a connection's packets may cross either.
//
// The sync node starts before the queues are read, so a peer's bulk can
// arrive before the first packet, and stops after they are drained.
// Deferral (SyncConfig.Defer, pfsync's defer): the first packet of a
// connection this node creates an entry for is held (nfq.Hold) until
// every connected peer has acknowledged the entry, or Defer has passed,
// and then accepted; so with asymmetric paths the reply, crossing the
// other node, finds its connection there.

// SyncConfig configures state sync. Name is this node's (by default its
// certificate's common name); Listen takes the peers' changes; Peers get
// this node's; the three files are the node's identity under the sync CA
// (TLS 1.3, mutual certificates: a peer without a certificate of that CA
// gets nothing in and nothing out).
type SyncConfig struct {
	Name                      string
	Listen                    string
	Peers                     []string
	CertFile, KeyFile, CAFile string
	// Defer: how long a new connection's first packet may wait for the
	// peers' acks; 0: never held.
	Defer time.Duration
}

// startSync makes and starts the sync node, listening and dialling in the
// daemon's network namespace. It returns a stop function that waits for
// the node to end.
func (d *Daemon) startSync() (stop func(), err error) {
	sc := d.cfg.Sync
	tlsCfg, err := hasync.LoadTLS(sc.CertFile, sc.KeyFile, sc.CAFile)
	if err != nil {
		return nil, err
	}
	name := sc.Name
	if name == "" {
		name = certName(tlsCfg)
	}
	if name == "" {
		return nil, errors.New("no --sync-name, and the certificate has no common name")
	}
	var ln net.Listener
	if sc.Listen != "" {
		if ln, err = listenTCP(d.cfg.Netns, sc.Listen); err != nil {
			return nil, fmt.Errorf("listening on %s: %w", sc.Listen, err)
		}
	}
	netns := d.cfg.Netns
	node, err := hasync.New(hasync.Config{
		Name:     name,
		Listener: ln,
		Peers:    sc.Peers,
		Dial: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialTCP(ctx, netns, addr)
		},
		TLS:   tlsCfg,
		Limit: d.limit,
		Defer: sc.Defer,
		Log:   d.log,
		Now:   d.now,
	}, d.table)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	d.sync.Store(node)
	d.m.reg.MustRegister(hasync.NewCollector(node))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := node.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("state sync stopped", "err", err)
		}
	}()
	d.log.Info("state sync", "name", name, "listen", sc.Listen, "peers", sc.Peers, "defer", sc.Defer.String())
	return func() {
		cancel()
		node.Close()
		<-done
	}, nil
}

// certName is the common name of the node's certificate, "" when it has
// none.
func certName(c *tls.Config) string {
	if len(c.Certificates) == 0 || len(c.Certificates[0].Certificate) == 0 {
		return ""
	}
	leaf := c.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificates[0].Certificate[0]); err != nil {
			return ""
		}
	}
	return leaf.Subject.CommonName
}

// deferFirst holds the packet p, the first of a connection whose entry
// the stateful engine just committed (firstOfConnection), until the peers
// have the entry k. It returns nfq.Hold when it holds the packet; the
// peers' ack (or Defer's end) then accepts it through the reader. One
// small allocation per held packet: deferral is opt-in, for new
// connections only.
func (d *Daemon) deferFirst(p *nfq.Packet, k conntrack.Key) nfq.Verdict {
	node := d.sync.Load()
	r := d.reader.Load()
	if node == nil || r == nil {
		return nfq.Accept
	}
	h := &heldPacket{r: r, queue: p.Queue, id: p.ID}
	node.Announce(k, h.done)
	if h.state.CompareAndSwap(heldPending, heldReturned) {
		return nfq.Hold
	}
	// Answered already (no peer up, or an ack faster than this): the
	// verdict goes out with the others.
	return nfq.Accept
}

// heldPacket is a packet deferFirst holds, and whether its verdict has
// been given: Announce may call done before it returns (then the packet
// is not held at all) or later, from the sync node's goroutine.
type heldPacket struct {
	r     *nfq.Reader
	queue uint16
	id    uint32
	state atomic.Uint32
}

const (
	heldPending  = iota // Announce has not returned, done not called
	heldAnswered        // done was called first: not held
	heldReturned        // the handler returned Hold: done releases it
)

func (h *heldPacket) done(acked bool) {
	if h.state.CompareAndSwap(heldPending, heldAnswered) {
		return
	}
	// Accepted whether the peers acked or not: deferral narrows the
	// race, as pfsync's does; it never blocks a passed connection.
	h.r.Release(h.queue, h.id, nfq.Accept)
}

// firstOfConnection reports whether the stateful decision dec passed the
// first packet of a connection and committed its entry (not a
// retransmitted first packet: that finds the entry, unreplied).
func firstOfConnection(dec *engine.Decision) bool {
	return dec.Tracked && dec.Cause != engine.CauseState && dec.CT.Label == conntrack.LabelNew &&
		(dec.CT.Reason == conntrack.ReasonNewConn || dec.CT.Reason == conntrack.ReasonReopen) &&
		(dec.Rule == nil || !dec.Rule.NoState)
}
