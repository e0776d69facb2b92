package conntrack

import (
	"testing"
	"time"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/packet"
)

// pkt builds a decoded packet without bytes from a line in pkttest's
// notation (see package pkttest), for example
//
//	tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192
//	icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53]
//
// Data is nil, so L4ChecksumOK reports true: tests of bad checksums build
// bytes (wire, pkttest.Bytes). It panics on a bad line rather than taking
// a testing.TB, so that package variables and benchmark setup can use it.
func pkt(s string) *packet.Packet {
	p, err := pkttest.Fields(s)
	if err != nil {
		panic(err)
	}
	return p
}

// clock is a fake clock in nanoseconds; tests advance it, never sleep.
type clock int64

func (c *clock) now() int64              { return int64(*c) }
func (c *clock) advance(d time.Duration) { *c += clock(d) }

// tbl is a table under test with its clock.
type tbl struct {
	t *testing.T
	*Table
	clock
}

func newTbl(t *testing.T, cfg Config) *tbl {
	t.Helper()
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	return &tbl{t: t, Table: New(cfg)}
}

// see tracks a packet and, when it is new and can create an entry, commits
// it as if the rules accepted it. It returns Track's result.
func (tb *tbl) see(s string) Result {
	tb.t.Helper()
	p := pkt(s)
	r := tb.Track(p, tb.now())
	if r.Label == LabelNew {
		tb.Commit(p, &r, tb.now())
	}
	return r
}

// want tracks (and commits) a packet and checks its label and direction.
func (tb *tbl) want(s string, label Label, reply bool) Result {
	tb.t.Helper()
	r := tb.see(s)
	if r.Label != label || r.Reply != reply {
		tb.t.Errorf("%s: got %v reply=%v (%s), want %v reply=%v", s, r.Label, r.Reply, r.ReasonString(), label, reply)
	}
	return r
}

// wantInvalid tracks a packet and checks it is invalid for the reason.
func (tb *tbl) wantInvalid(s string, why Reason) {
	tb.t.Helper()
	r := tb.Track(pkt(s), tb.now())
	if r.Label != LabelInvalid || r.Reason != why {
		tb.t.Errorf("%s: got %v (%s), want invalid (%s)", s, r.Label, r.ReasonString(), why)
	}
}

// entry returns the entry of the connection s belongs to.
func (tb *tbl) entry(s string) (EntryInfo, bool) {
	var k Key
	packetKey(&k, pkt(s))
	return tb.Get(k, tb.now())
}
