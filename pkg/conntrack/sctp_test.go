package conntrack

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/packet"
)

// ch is an SCTP ch for tests: type, flags, value; the length field
// is 4 + len(value) unless length says otherwise (-1: 0).
type ch struct {
	typ, flags uint8
	value      []byte
	length     int
}

func initChunk(typ uint8, tag uint32) ch {
	v := binary.BigEndian.AppendUint32(nil, tag)
	return ch{typ: typ, value: append(v, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1)}
}

func dataChunk() ch      { return ch{typ: sctpData, flags: 3, value: make([]byte, 16)} }
func sackChunk() ch      { return ch{typ: sctpSack, value: make([]byte, 12)} }
func hbChunk(t uint8) ch { return ch{typ: t, value: []byte{0, 1, 0, 8, 1, 2, 3, 4}} }
func bareChunk(t, flags uint8) ch {
	return ch{typ: t, flags: flags}
}

// sctpBytes builds an SCTP packet between the endpoints of ports ("198.18.0.1:5001
// > 198.18.0.2:6001", pkttest's notation) with verification tag vtag and the
// chunks, its CRC32c right.
func sctpBytes(t testing.TB, ports string, vtag uint32, cs ...ch) []byte {
	t.Helper()
	var body []byte
	for _, c := range cs {
		l := 4 + len(c.value)
		switch {
		case c.length < 0:
			l = 0
		case c.length > 0:
			l = c.length
		}
		b := []byte{c.typ, c.flags, byte(l >> 8), byte(l)}
		b = append(b, c.value...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		body = append(body, b...)
	}
	pkt := pkttest.MustBytes(t, fmt.Sprintf("sctp %s len=%d", ports, len(body)))
	l4 := 20
	if pkt[0]>>4 == 6 {
		l4 = 40
	}
	s := pkt[l4:]
	binary.BigEndian.PutUint32(s[4:], vtag)
	copy(s[12:], body)
	binary.LittleEndian.PutUint32(s[8:], 0)
	binary.LittleEndian.PutUint32(s[8:], crc32.Checksum(s, crc32.MakeTable(crc32.Castagnoli)))
	return pkt
}

// assoc is one SCTP association under test: the client's ports line, and
// the table it goes through.
type assoc struct {
	tb         *tbl
	orig, back string // "198.18.0.1:5001 > 198.18.0.2:6001" and its reverse
}

func newAssoc(tb *tbl, cli, srv string) *assoc {
	return &assoc{tb: tb, orig: cli + " > " + srv, back: srv + " > " + cli}
}

// send decodes an SCTP packet from the client (reply false) or the server
// and tracks it, committing a new one.
func (a *assoc) send(reply bool, vtag uint32, cs ...ch) Result {
	a.tb.t.Helper()
	ports := a.orig
	if reply {
		ports = a.back
	}
	var p packet.Packet
	p.Decode(sctpBytes(a.tb.t, ports, vtag, cs...), packet.LinkIP)
	if p.Kind != packet.KindOK {
		a.tb.t.Fatalf("decode: %v", p.Kind)
	}
	r := a.tb.Track(&p, a.tb.now())
	if r.Label == LabelNew {
		a.tb.Commit(&p, &r, a.tb.now())
	}
	return r
}

// entry returns the association's entry and its SCTP state.
func (a *assoc) entry() (EntryInfo, *sctpConn, bool) {
	var p packet.Packet
	p.Decode(sctpBytes(a.tb.t, a.orig, 0, dataChunk()), packet.LinkIP)
	var k Key
	packetKey(&k, &p)
	e, ok := a.tb.Get(k, a.tb.now())
	if !ok {
		return e, nil, false
	}
	h := a.tb.hash.sum(&k)
	s := a.tb.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, idx, _, _ := s.find(&k, h)
	c := *s.at(idx).sctp()
	return e, &c, true
}

// sstep is one packet of an association and what the kernel makes of it.
type sstep struct {
	reply   bool
	vtag    uint32
	chunks  []ch
	label   Label
	reason  Reason        // when label is LabelInvalid
	state   SCTPState     // after it
	timeout time.Duration // left after it (0: not checked)
}

func (a *assoc) run(steps []sstep) {
	t := a.tb.t
	t.Helper()
	for i, s := range steps {
		r := a.send(s.reply, s.vtag, s.chunks...)
		if r.Label != s.label || r.Label == LabelInvalid && r.Reason != s.reason || r.Label != LabelInvalid && r.Reply != s.reply {
			t.Errorf("step %d: %v reply=%v (%s), want %v reply=%v (%v)", i, r.Label, r.Reply, r.ReasonString(), s.label, s.reply, s.reason)
		}
		e, _, ok := a.entry()
		switch {
		case s.state == SCTPNone:
			if ok {
				t.Errorf("step %d: an entry in %v, want none", i, e.SCTPState)
			}
		case !ok:
			t.Errorf("step %d: no entry, want %v", i, s.state)
		case e.SCTPState != s.state || s.timeout != 0 && e.Timeout != s.timeout:
			t.Errorf("step %d: %v with %v left, want %v with %v", i, e.SCTPState, e.Timeout, s.state, s.timeout)
		}
	}
}

const (
	cTag = 0x11111111 // the client's initiate tag: the server's packets carry it
	sTag = 0x22222222 // the server's
)

// handshake are the four packets that establish an association, as the
// kernel sees them (states and timeouts read with conntrack -L after each
// packet of testdata/sctp-vtags.pcap replayed into a namespace).
var handshake = []sstep{
	{false, 0, []ch{initChunk(sctpInit, cTag)}, LabelNew, 0, SCTPClosed, 10 * time.Second},
	{true, cTag, []ch{initChunk(sctpInitAck, sTag)}, LabelEstablished, 0, SCTPCookieWait, 3 * time.Second},
	{false, sTag, []ch{{typ: sctpCookieEcho, value: []byte("cookie!!")}}, LabelEstablished, 0, SCTPCookieEchoed, 3 * time.Second},
	{true, cTag, []ch{bareChunk(sctpCookieAck, 0)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
}

// TestSCTPAssociation: an association through its states, with the
// kernel's state, label and timeout at every packet, and packets with a
// wrong verification tag refused at every stage.
func TestSCTPAssociation(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5001", "198.18.0.2:6001")
	a.run(handshake)
	if e, c, _ := a.entry(); !e.Assured || c.vtag != [2]uint32{sTag, cTag} || c.init != [2]bool{} {
		t.Errorf("established: assured %v, tags %#x, init %v", e.Assured, c.vtag, c.init)
	}
	a.run([]sstep{
		{false, sTag, []ch{dataChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{true, cTag, []ch{sackChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{false, sTag + 1, []ch{dataChunk()}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{true, sTag, []ch{dataChunk()}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		// A chunk type the state machine does not know changes
		// nothing, and refreshes.
		{false, sTag, []ch{{typ: 0x80, value: []byte{1, 2, 3, 4}}}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{false, sTag, []ch{shutdownChunk()}, LabelEstablished, 0, SCTPShutdownSent, 3 * time.Second},
		{true, cTag, []ch{bareChunk(sctpShutdownAck, 0)}, LabelEstablished, 0, SCTPShutdownAckSent, 3 * time.Second},
		{false, sTag + 1, []ch{bareChunk(sctpShutdownComplete, 0)}, LabelInvalid, ReasonSCTPVtag, SCTPShutdownAckSent, 0},
		{false, sTag, []ch{bareChunk(sctpShutdownComplete, 0)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
		{false, sTag, []ch{dataChunk()}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
	})
	// A restart: INIT on the CLOSED association does not refresh it.
	tb.advance(time.Second)
	a.run([]sstep{
		{false, 0, []ch{initChunk(sctpInit, 0x55)}, LabelEstablished, 0, SCTPClosed, 9 * time.Second},
		{true, 0x55, []ch{initChunk(sctpInitAck, 0x66)}, LabelEstablished, 0, SCTPCookieWait, 3 * time.Second},
		{false, sTag, []ch{{typ: sctpCookieEcho}}, LabelInvalid, ReasonSCTPVtag, SCTPCookieWait, 0},
		{false, 0x66, []ch{{typ: sctpCookieEcho}}, LabelEstablished, 0, SCTPCookieEchoed, 3 * time.Second},
		{true, cTag, []ch{bareChunk(sctpCookieAck, 0)}, LabelInvalid, ReasonSCTPVtag, SCTPCookieEchoed, 0},
		{true, 0x55, []ch{bareChunk(sctpCookieAck, 0)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
	})
}

func shutdownChunk() ch { return ch{typ: sctpShutdown, value: []byte{0, 0, 0, 1}} }

// TestSCTPShutdownFromServer and ABORT: the reply side's SHUTDOWN, the T
// bit of SHUTDOWN COMPLETE and ABORT (the tag reflected).
func TestSCTPShutdownAndAbort(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5003", "198.18.0.2:6003")
	a.run(handshake)
	a.run([]sstep{
		{true, cTag, []ch{shutdownChunk()}, LabelEstablished, 0, SCTPShutdownRecd, 3 * time.Second},
		{false, sTag, []ch{bareChunk(sctpShutdownAck, 0)}, LabelEstablished, 0, SCTPShutdownAckSent, 3 * time.Second},
		{true, cTag, []ch{bareChunk(sctpShutdownComplete, sctpFlagT)}, LabelInvalid, ReasonSCTPVtag, SCTPShutdownAckSent, 0},
		{true, sTag, []ch{bareChunk(sctpShutdownComplete, sctpFlagT)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
	})
	b := newAssoc(tb, "198.18.0.1:5002", "198.18.0.2:6002")
	b.run(handshake)
	b.run([]sstep{
		{false, cTag, []ch{bareChunk(sctpAbort, 0)}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{false, sTag, []ch{bareChunk(sctpAbort, sctpFlagT)}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{false, cTag, []ch{bareChunk(sctpAbort, sctpFlagT)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
	})
	// DATA then ABORT: every chunk steps the state, in order.
	c := newAssoc(tb, "198.18.0.1:5004", "198.18.0.2:6004")
	c.run(handshake)
	c.run([]sstep{
		{false, sTag + 2, []ch{dataChunk(), bareChunk(sctpAbort, 0)}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{false, sTag, []ch{dataChunk(), bareChunk(sctpAbort, 0)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
	})
}

// TestSCTPFirstPacket: which packets may start an association (sctp_new,
// and the packet function's out-of-the-blue check before it), with the
// state each starts in. The kernel's labels for these are in
// testdata/sctp-ootb.pcap.
func TestSCTPFirstPacket(t *testing.T) {
	for _, tt := range []struct {
		name   string
		vtag   uint32
		chunks []ch
		reason Reason        // 0: new
		state  SCTPState     // when new
		to     time.Duration // when new
	}{
		{"ABORT", 0x1234, []ch{bareChunk(sctpAbort, 0)}, ReasonSCTPNoInit, 0, 0},
		{"ABORT with T", 0x1234, []ch{bareChunk(sctpAbort, sctpFlagT)}, ReasonSCTPNoInit, 0, 0},
		{"SHUTDOWN COMPLETE", 0x1234, []ch{bareChunk(sctpShutdownComplete, 0)}, ReasonSCTPNoInit, 0, 0},
		{"COOKIE ACK", 0, []ch{bareChunk(sctpCookieAck, 0)}, ReasonSCTPNoInit, 0, 0},
		{"DATA", 0x1234, []ch{dataChunk()}, ReasonSCTPNoInit, 0, 0},
		{"SACK", 0x1234, []ch{sackChunk()}, ReasonSCTPNoInit, 0, 0},
		{"FORWARD TSN", 0x1234, []ch{{typ: 192, value: []byte{0, 0, 0, 1}}}, ReasonSCTPNoInit, 0, 0},
		{"HEARTBEAT and DATA", 0x1234, []ch{hbChunk(sctpHeartbeat), dataChunk()}, ReasonSCTPNoInit, 0, 0},
		{"INIT with a vtag", 0x1234, []ch{initChunk(sctpInit, 1)}, ReasonSCTPVtag, 0, 0},
		{"INIT without its header", 0, []ch{{typ: sctpInit}}, ReasonSCTPChunks, 0, 0},
		{"COOKIE ECHO with a vtag", 0x1234, []ch{{typ: sctpCookieEcho}}, ReasonSCTPVtag, 0, 0},
		{"ERROR with a vtag", 0x1234, []ch{{typ: sctpError, value: []byte{0, 1, 0, 4}}}, ReasonSCTPVtag, 0, 0},
		{"SHUTDOWN with a vtag", 0x1234, []ch{shutdownChunk()}, ReasonSCTPVtag, 0, 0},
		{"INIT ACK with a vtag", 0x1234, []ch{initChunk(sctpInitAck, 1)}, ReasonSCTPVtag, 0, 0},
		{"INIT", 0, []ch{initChunk(sctpInit, 1)}, 0, SCTPClosed, 10 * time.Second},
		{"COOKIE ECHO", 0, []ch{{typ: sctpCookieEcho}}, 0, SCTPClosed, 10 * time.Second},
		{"ERROR", 0, []ch{{typ: sctpError, value: []byte{0, 1, 0, 4}}}, 0, SCTPClosed, 10 * time.Second},
		{"SHUTDOWN", 0, []ch{shutdownChunk()}, 0, SCTPClosed, 10 * time.Second},
		{"INIT ACK", 0, []ch{initChunk(sctpInitAck, 1)}, 0, SCTPClosed, 10 * time.Second},
		{"SHUTDOWN ACK", 0x4321, []ch{bareChunk(sctpShutdownAck, 0)}, 0, SCTPShutdownAckSent, 3 * time.Second},
		{"HEARTBEAT", 0x5555, []ch{hbChunk(sctpHeartbeat)}, 0, SCTPHeartbeatSent, 30 * time.Second},
		{"HEARTBEAT ACK", 0x5555, []ch{hbChunk(sctpHeartbeatAck)}, 0, SCTPClosed, 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTbl(t, Config{})
			a := newAssoc(tb, "198.18.0.1:7001", "198.18.0.2:8001")
			want := sstep{vtag: tt.vtag, chunks: tt.chunks, label: LabelNew, state: tt.state, timeout: tt.to}
			if tt.reason != 0 {
				want.label, want.reason = LabelInvalid, tt.reason
			}
			a.run([]sstep{want})
		})
	}
}

// TestSCTPOutOfTheBlueAnswers: the associations that a SHUTDOWN ACK and a
// HEARTBEAT start, and the tags their answers must carry.
func TestSCTPOutOfTheBlueAnswers(t *testing.T) {
	tb := newTbl(t, Config{})
	// A SHUTDOWN COMPLETE answering an out-of-the-blue SHUTDOWN ACK must
	// carry the tag without T; with T the kernel expects the original
	// side's tag, which it does not know (0).
	a := newAssoc(tb, "198.18.0.1:7003", "198.18.0.2:8003")
	a.run([]sstep{
		{false, 0x4321, []ch{bareChunk(sctpShutdownAck, 0)}, LabelNew, 0, SCTPShutdownAckSent, 3 * time.Second},
		{true, 0x4321, []ch{bareChunk(sctpShutdownComplete, sctpFlagT)}, LabelInvalid, ReasonSCTPVtag, SCTPShutdownAckSent, 0},
		{true, 0x4321, []ch{bareChunk(sctpShutdownComplete, 0)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
	})
	// A HEARTBEAT on a path conntrack has not seen, answered: ESTABLISHED
	// and assured, with the tags of both.
	b := newAssoc(tb, "198.18.0.1:7005", "198.18.0.2:8005")
	b.run([]sstep{
		{false, 0x5555, []ch{hbChunk(sctpHeartbeat)}, LabelNew, 0, SCTPHeartbeatSent, 30 * time.Second},
		{false, 0x5555, []ch{hbChunk(sctpHeartbeat)}, LabelNew, 0, SCTPHeartbeatSent, 30 * time.Second},
		{true, 0x6666, []ch{hbChunk(sctpHeartbeatAck)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{false, 0x5555, []ch{dataChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{true, 0x6666, []ch{dataChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{true, 0x6667, []ch{dataChunk()}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
	})
	if e, _, _ := b.entry(); !e.Assured {
		t.Error("an association established by HEARTBEAT ACK is not assured")
	}
}

// TestSCTPHeartbeatAckFirstLearnsEachSidesTag: an entry opened by a
// HEARTBEAT ACK knows no tag from sctp_new (which learns one only from
// INIT, HEARTBEAT and SHUTDOWN ACK), so the HEARTBEAT ACK sets its own
// direction's and the other side's HEARTBEAT ACK, with its own tag, sets
// the other: the kernel labels it established
// (testdata/kerneldiff/sctp-heartbeat-ack-first.pcap). An ABORT back with
// the first tag is invalid (the reply side's tag is not that one), one
// with tag 0 before the reply side's tag is known is accepted.
func TestSCTPHeartbeatAckFirstLearnsEachSidesTag(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:7006", "198.18.0.2:8006")
	a.run([]sstep{
		{false, 0x67f9fe19, []ch{hbChunk(sctpHeartbeatAck)}, LabelNew, 0, SCTPClosed, 10 * time.Second},
		{true, 0x338ab49d, []ch{hbChunk(sctpHeartbeatAck)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
		{false, 0x67f9fe19, []ch{dataChunk()}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
		{true, 0x338ab49d, []ch{dataChunk()}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
		{true, 0x67f9fe19, []ch{dataChunk()}, LabelInvalid, ReasonSCTPVtag, SCTPClosed, 0},
	})
	if _, c, _ := a.entry(); c.vtag != [2]uint32{0x67f9fe19, 0x338ab49d} {
		t.Errorf("tags %#x, want each side's own", c.vtag)
	}
	b := newAssoc(tb, "198.18.0.1:7007", "198.18.0.2:8007")
	b.run([]sstep{
		{false, 0x1111, []ch{hbChunk(sctpHeartbeatAck)}, LabelNew, 0, SCTPClosed, 10 * time.Second},
		{true, 0x1111, []ch{bareChunk(sctpAbort, 0)}, LabelInvalid, ReasonSCTPVtag, SCTPClosed, 0},
		{true, 0, []ch{bareChunk(sctpAbort, 0)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
	})
}

// TestSCTPHeartbeatMovesTags: a HEARTBEAT with a new tag is let through
// once without refreshing the entry; a HEARTBEAT ACK with a new tag from
// the other side then replaces both directions' tags, the first one
// unknown (0) until a HEARTBEAT teaches it again. Multihoming moving an
// association to another pair of tags, as the kernel follows it.
func TestSCTPHeartbeatMovesTags(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5001", "198.18.0.2:6001")
	a.run(handshake)
	tb.advance(time.Second)
	a.run([]sstep{
		{false, 0x3333, []ch{hbChunk(sctpHeartbeat)}, LabelEstablished, 0, SCTPEstablished, 209 * time.Second},
		// A second one is refused: the failed check is pending.
		{false, 0x3333, []ch{hbChunk(sctpHeartbeat), hbChunk(sctpHeartbeat)}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		// HEARTBEAT ACK with a new tag from the same side: refused.
		{false, 0x3333, []ch{hbChunk(sctpHeartbeatAck)}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{true, 0x4444, []ch{hbChunk(sctpHeartbeatAck)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{false, sTag, []ch{dataChunk()}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{false, sTag, []ch{hbChunk(sctpHeartbeat)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{false, sTag, []ch{dataChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{true, 0x4444, []ch{dataChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{true, cTag, []ch{dataChunk()}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
	})
	// Packet counters: the HEARTBEAT let through unrefreshed was not
	// counted either (the kernel returns before nf_ct_refresh_acct).
	if e, _, _ := a.entry(); e.Packets != [2]uint64{2 + 2, 2 + 2} {
		t.Errorf("packets %v, want [4 4]", e.Packets)
	}
}

// TestSCTPInitCollision: both sides send INIT; each INIT ACK must carry
// its own INIT's tag.
func TestSCTPInitCollision(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5004", "198.18.0.2:6004")
	a.run([]sstep{
		{false, 0, []ch{initChunk(sctpInit, cTag)}, LabelNew, 0, SCTPClosed, 10 * time.Second},
		{true, 0, []ch{initChunk(sctpInit, sTag)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
		{false, sTag, []ch{initChunk(sctpInitAck, cTag+1)}, LabelInvalid, ReasonSCTPVtag, SCTPClosed, 0},
		{false, sTag, []ch{initChunk(sctpInitAck, cTag)}, LabelEstablished, 0, SCTPClosed, 10 * time.Second},
		{true, cTag, []ch{initChunk(sctpInitAck, sTag)}, LabelEstablished, 0, SCTPCookieWait, 3 * time.Second},
		{false, sTag, []ch{{typ: sctpCookieEcho}}, LabelEstablished, 0, SCTPCookieEchoed, 3 * time.Second},
		{true, cTag, []ch{bareChunk(sctpCookieAck, 0)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
	})
	// An INIT ACK whose tag is not what the INIT announced, and INIT ACK
	// retransmitted with another tag (the last one counts).
	b := newAssoc(tb, "198.18.0.1:5005", "198.18.0.2:6005")
	b.run([]sstep{
		{false, 0, []ch{initChunk(sctpInit, cTag)}, LabelNew, 0, SCTPClosed, 10 * time.Second},
		{true, cTag + 1, []ch{initChunk(sctpInitAck, sTag)}, LabelInvalid, ReasonSCTPVtag, SCTPClosed, 0},
		{true, cTag, []ch{initChunk(sctpInitAck, sTag)}, LabelEstablished, 0, SCTPCookieWait, 3 * time.Second},
		{true, cTag, []ch{initChunk(sctpInitAck, sTag+1)}, LabelEstablished, 0, SCTPCookieWait, 3 * time.Second},
		{false, sTag, []ch{{typ: sctpCookieEcho}}, LabelInvalid, ReasonSCTPVtag, SCTPCookieWait, 0},
		{false, sTag + 1, []ch{{typ: sctpCookieEcho}}, LabelEstablished, 0, SCTPCookieEchoed, 3 * time.Second},
	})
	// A reply-direction ch with no transition from NONE does not
	// exist (an entry is never in NONE), but HEARTBEAT_SENT refuses a
	// reply INIT.
	c := newAssoc(tb, "198.18.0.1:5006", "198.18.0.2:6006")
	c.run([]sstep{
		{false, 0x77, []ch{hbChunk(sctpHeartbeat)}, LabelNew, 0, SCTPHeartbeatSent, 30 * time.Second},
		{true, 0, []ch{initChunk(sctpInit, sTag)}, LabelInvalid, ReasonSCTPState, SCTPHeartbeatSent, 0},
	})
}

// TestSCTPStaleINITNotRecorded: an INIT whose initiate tag is the one
// conntrack already holds for the other direction (stale, or
// retransmitted) on an existing entry is not recorded as an INIT, so the
// INIT ACK that answers it must carry the tag conntrack knows; an INIT
// with a new tag is a restart, whose INIT ACK may bring a new one. The
// kernel (6.18) labels both so, checked by replaying these packets.
func TestSCTPStaleINITNotRecorded(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5007", "198.18.0.2:6007")
	a.run(handshake)
	a.run([]sstep{
		{false, 0, []ch{initChunk(sctpInit, cTag)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{true, cTag, []ch{initChunk(sctpInitAck, 0x33)}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{false, 0x33, []ch{dataChunk()}, LabelInvalid, ReasonSCTPVtag, SCTPEstablished, 0},
		{true, cTag, []ch{initChunk(sctpInitAck, sTag)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{false, sTag, []ch{dataChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
	})
	b := newAssoc(tb, "198.18.0.1:5008", "198.18.0.2:6008")
	b.run(handshake)
	b.run([]sstep{
		{false, 0, []ch{initChunk(sctpInit, 0x44)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{true, 0x44, []ch{initChunk(sctpInitAck, 0x33)}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
		{false, 0x33, []ch{dataChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second},
	})
}

// TestSCTPBasicChecks: the kernel's do_basic_checks on bundling and chunk
// lengths (testdata/sctp-bundling.pcap has the kernel's labels).
func TestSCTPBasicChecks(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:8001", "198.18.0.2:9001")
	bad := func(reply bool, vtag uint32, cs ...ch) sstep {
		return sstep{reply: reply, vtag: vtag, chunks: cs, label: LabelInvalid, reason: ReasonSCTPChunks}
	}
	a.run([]sstep{bad(false, 0, initChunk(sctpInit, cTag), dataChunk()), bad(false, 0, dataChunk(), initChunk(sctpInit, cTag))})
	a.run(handshake[:2])
	ok := func(cs ...ch) sstep {
		return sstep{vtag: sTag, chunks: cs, label: LabelEstablished}
	}
	for _, s := range []sstep{
		bad(true, cTag, initChunk(sctpInitAck, sTag), dataChunk()),
		bad(false, sTag, dataChunk(), ch{typ: sctpCookieEcho}),
		bad(true, cTag, sackChunk(), bareChunk(sctpCookieAck, 0)),
		bad(false, sTag, dataChunk(), bareChunk(sctpShutdownComplete, 0)),
		bad(false, sTag, bareChunk(sctpShutdownComplete, 0), dataChunk()),
		bad(false, sTag),
		bad(false, sTag, ch{typ: sctpData, length: -1}),
		bad(false, sTag, dataChunk(), ch{typ: sctpData, length: -1}),
		ok(ch{typ: sctpData, length: 1}),
		ok(ch{typ: sctpData, length: 3}),
		ok(ch{typ: sctpData, flags: 3, value: make([]byte, 16), length: 400}),
	} {
		s.state = SCTPCookieWait // DATA leaves it as it is
		a.run([]sstep{s})
	}
	a.run([]sstep{{false, sTag, []ch{{typ: sctpCookieEcho}, dataChunk()}, LabelEstablished, 0, SCTPCookieEchoed, 3 * time.Second}})
	a.run([]sstep{{true, cTag, []ch{bareChunk(sctpCookieAck, 0), sackChunk()}, LabelEstablished, 0, SCTPEstablished, 210 * time.Second}})
}

// TestSCTPChecksum: a wrong CRC32c is invalid, unless the table does not
// check checksums.
func TestSCTPChecksum(t *testing.T) {
	b := sctpBytes(t, "198.18.0.1:2907 > 198.18.0.2:6303", 0, initChunk(sctpInit, 1))
	b[len(b)-1] ^= 1
	var p packet.Packet
	p.Decode(b, packet.LinkIP)
	if r := New(Config{}).Track(&p, 0); r.Label != LabelInvalid || r.Reason != ReasonBadChecksum {
		t.Errorf("bad CRC32c: %v (%s)", r.Label, r.ReasonString())
	}
	if r := New(Config{NoChecksum: true}).Track(&p, 0); r.Label != LabelNew {
		t.Errorf("bad CRC32c, checksums off: %v (%s)", r.Label, r.ReasonString())
	}
	// A packet without bytes (pkttest.Fields) has no chunks to read.
	if r := New(Config{}).Track(pkt("sctp 198.18.0.1:1 > 198.18.0.2:2 chunk=1:20"), 0); r.Label != LabelInvalid || r.Reason != ReasonSCTPChunks {
		t.Errorf("no bytes: %v (%s)", r.Label, r.ReasonString())
	}
}

// TestSCTPTimeouts: each state's timeout, configured, and expiry: the
// association is gone 3 s after its INIT ACK unless a COOKIE ECHO came,
// and an INIT retransmitted does not keep a CLOSED entry alive.
func TestSCTPTimeouts(t *testing.T) {
	to := Timeouts{SCTP: SCTPTimeouts{Closed: 5 * time.Second, CookieWait: 2 * time.Second, CookieEchoed: 4 * time.Second, Established: time.Hour, HeartbeatSent: 7 * time.Second}}
	tb := newTbl(t, Config{Timeouts: to})
	a := newAssoc(tb, "198.18.0.1:5001", "198.18.0.2:6001")
	a.run([]sstep{
		{false, 0, []ch{initChunk(sctpInit, cTag)}, LabelNew, 0, SCTPClosed, 5 * time.Second},
		{true, cTag, []ch{initChunk(sctpInitAck, sTag)}, LabelEstablished, 0, SCTPCookieWait, 2 * time.Second},
		{false, sTag, []ch{{typ: sctpCookieEcho}}, LabelEstablished, 0, SCTPCookieEchoed, 4 * time.Second},
		{true, cTag, []ch{bareChunk(sctpCookieAck, 0)}, LabelEstablished, 0, SCTPEstablished, time.Hour},
	})
	h := newAssoc(tb, "198.18.0.1:5002", "198.18.0.2:6002")
	h.run([]sstep{{false, 9, []ch{hbChunk(sctpHeartbeat)}, LabelNew, 0, SCTPHeartbeatSent, 7 * time.Second}})

	tb = newTbl(t, Config{})
	b := newAssoc(tb, "198.18.0.1:5001", "198.18.0.2:6001")
	b.run(handshake[:2])
	tb.advance(3 * time.Second)
	// Gone: the COOKIE ECHO, out of the blue now, carries a tag.
	b.run([]sstep{{false, sTag, []ch{{typ: sctpCookieEcho}}, LabelInvalid, ReasonSCTPVtag, SCTPNone, 0}})

	c := newAssoc(tb, "198.18.0.1:5009", "198.18.0.2:6009")
	c.run(handshake[:1])
	for range 9 {
		tb.advance(time.Second)
		c.run([]sstep{{false, 0, []ch{initChunk(sctpInit, cTag)}, LabelNew, 0, SCTPClosed, 0}})
	}
	tb.advance(time.Second) // 10 s after the first INIT
	if _, _, ok := c.entry(); ok {
		t.Error("retransmitted INITs kept a CLOSED association alive")
	}
}

// TestSCTPListing: an SCTP entry shows its SCTP state, as conntrack -L
// does, and is counted by it.
func TestSCTPListing(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5001", "198.18.0.2:6001")
	a.run(handshake)
	b := newAssoc(tb, "198.18.0.1:5002", "198.18.0.2:6002")
	b.run(handshake[:2])
	e, _, _ := a.entry()
	if got, want := e.String(), "sctp     132 210 ESTABLISHED src=198.18.0.1 dst=198.18.0.2 sport=5001 dport=6001 packets=2 bytes=96 src=198.18.0.2 dst=198.18.0.1 sport=6001 dport=5001 packets=2 bytes=88 [ASSURED]"; got != want {
		t.Errorf("String:\n%s\nwant\n%s", got, want)
	}
	if e.StateName() != "ESTABLISHED" || e.State() != "ESTABLISHED" {
		t.Errorf("StateName %q State %q", e.StateName(), e.State())
	}
	got := map[string]int{}
	for _, c := range tb.Counts(tb.now()) {
		got[c.Proto.String()+" "+c.State] += c.N
	}
	if want := map[string]int{"sctp ESTABLISHED": 1, "sctp COOKIE_WAIT": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Counts %v, want %v", got, want)
	}
	checkCounts(t, tb.Table)
	tb.advance(4 * time.Second)
	b.run([]sstep{{true, cTag, []ch{dataChunk()}, LabelInvalid, ReasonSCTPNoInit, SCTPNone, 0}})
	checkCounts(t, tb.Table)
}

// TestSCTPSnapshot: a snapshot keeps an association's state, tags and
// flags; the restored timeout is capped by its state's; a record of an
// association from before SCTP states (all zero) is dropped; a record with
// an impossible state is refused.
func TestSCTPSnapshot(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5001", "198.18.0.2:6001")
	a.run(handshake)
	a.run([]sstep{{false, 0x3333, []ch{hbChunk(sctpHeartbeat)}, LabelEstablished, 0, SCTPEstablished, 0}}) // hbFailed
	b := newAssoc(tb, "[fd00:198:18::1]:5002", "[fd00:198:18::2]:6002")
	b.run(handshake[:2])
	snap := save(t, tb.Table, tb.now())
	before := rawEntries(tb.Table, tb.now())

	tab := New(Config{Seed: 1})
	if n, err := tab.Load(bytes.NewReader(snap), 0); err != nil || n != 2 {
		t.Fatalf("Load: %d, %v", n, err)
	}
	after := rawEntries(tab, 0)
	for k, e := range before {
		if a := after[k]; a != e {
			t.Errorf("%v: restored as\n%+v\nwant\n%+v", k, *a.sctp(), *e.sctp())
		}
	}
	if e := before[keyOf(t, "198.18.0.1:5001 > 198.18.0.2:6001")]; !e.sctp().hbFailed || e.sctp().state != SCTPEstablished || e.sctp().vtag != [2]uint32{sTag, cTag} {
		t.Errorf("before: %+v", *e.sctp())
	}

	// Capped by the state's timeout: COOKIE_WAIT 1 s here.
	small := New(Config{Timeouts: Timeouts{SCTP: SCTPTimeouts{CookieWait: time.Second, Established: 2 * time.Second}}})
	if _, err := small.Load(bytes.NewReader(snap), 0); err != nil {
		t.Fatal(err)
	}
	small.Walk(0, func(e EntryInfo) bool {
		if max := small.to.SCTP.of(e.SCTPState); e.Timeout > max {
			t.Errorf("%v in %v restored with %v, above %v", e.Original, e.SCTPState, e.Timeout, max)
		}
		return true
	})

	// The record of the association in ESTABLISHED (the first of the
	// two or the second), with its SCTP bytes changed.
	rec := func(mod func(r []byte)) []byte {
		out := bytes.Clone(snap)
		for i := range 2 {
			r := out[snapshotHeaderSize+i*snapshotRecordSize:][:snapshotRecordSize]
			if SCTPState(r[80]) == SCTPEstablished {
				mod(r)
			}
		}
		return reseal(out)
	}
	legacy := rec(func(r []byte) { clear(r[80:]) })
	if n, err := New(Config{}).Load(bytes.NewReader(legacy), 0); err != nil || n != 1 {
		t.Errorf("a legacy SCTP record: loaded %d, %v; want 1 (it dropped)", n, err)
	}
	for _, c := range []struct {
		name string
		mod  func(r []byte)
		want string
	}{
		{"state out of range", func(r []byte) { r[80] = uint8(numSCTPStates) }, "SCTP state 9 out of range"},
		{"unknown flags", func(r []byte) { r[81] |= 4 }, "unknown SCTP flags"},
		{"reserved", func(r []byte) { r[85] = 1 }, "reserved SCTP bytes"},
		{"TCP bytes", func(r []byte) { r[120] = 1 }, "bytes after the SCTP state"},
		{"NONE with tags", func(r []byte) { r[80] = 0 }, "SCTP state NONE with tags"},
	} {
		_, err := New(Config{}).Load(bytes.NewReader(rec(c.mod)), 0)
		if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// keyOf is the tuple of an SCTP packet between the endpoints of ports.
func keyOf(t *testing.T, ports string) Key {
	var p packet.Packet
	p.Decode(sctpBytes(t, ports, 0, dataChunk()), packet.LinkIP)
	var k Key
	packetKey(&k, &p)
	return k
}

// TestSCTPEarlyDrop: at the limit (of 100 or more), an assured association
// that is shutting down may go to make room, one that is established may
// not (sctp_can_early_drop).
func TestSCTPEarlyDrop(t *testing.T) {
	tb := newTbl(t, Config{Limit: 128, Shards: 1})
	for i := range 127 {
		newAssoc(tb, fmt.Sprintf("198.18.1.%d:5000", i+1), "198.18.0.2:6000").run(handshake)
	}
	closing := newAssoc(tb, "198.18.2.1:5000", "198.18.0.2:6000")
	closing.run(handshake)
	closing.run([]sstep{{false, sTag, []ch{shutdownChunk()}, LabelEstablished, 0, SCTPShutdownSent, 3 * time.Second}})
	if tb.Len() != 128 {
		t.Fatalf("%d entries", tb.Len())
	}
	extra := newAssoc(tb, "198.18.3.1:5000", "198.18.0.2:6000")
	extra.run(handshake[:1])
	if _, _, ok := closing.entry(); ok {
		t.Error("the association shutting down was not dropped")
	}
	if _, _, ok := extra.entry(); !ok {
		t.Error("the new association was refused")
	}
	refused := newAssoc(tb, "198.18.3.2:5000", "198.18.0.2:6000")
	if r := refused.send(false, 0, initChunk(sctpInit, cTag)); r.Reason != ReasonTableFull {
		t.Errorf("with only established associations left: %v (%s), want table full", r.Label, r.ReasonString())
	}
}

// TestSCTPNoAllocs: tracking an association's packets allocates nothing.
func TestSCTPNoAllocs(t *testing.T) {
	tb := newTbl(t, Config{})
	a := newAssoc(tb, "198.18.0.1:5001", "198.18.0.2:6001")
	a.run(handshake)
	var ps []*packet.Packet
	for _, b := range [][]byte{
		sctpBytes(t, a.orig, sTag, dataChunk()),
		sctpBytes(t, a.back, cTag, sackChunk(), dataChunk()),
		sctpBytes(t, a.orig, sTag, hbChunk(sctpHeartbeat)),
		sctpBytes(t, a.orig, sTag+1, dataChunk()), // invalid
	} {
		p := new(packet.Packet)
		p.Decode(b, packet.LinkIP)
		ps = append(ps, p)
	}
	var r Result
	allocs := testing.AllocsPerRun(1000, func() {
		for _, p := range ps {
			tb.TrackInto(&r, p, tb.now())
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs per run", allocs)
	}
}

// TestSCTPStateNames: every state has conntrack's name.
func TestSCTPStateNames(t *testing.T) {
	want := "NONE CLOSED COOKIE_WAIT COOKIE_ECHOED ESTABLISHED SHUTDOWN_SENT SHUTDOWN_RECD SHUTDOWN_ACK_SENT HEARTBEAT_SENT"
	var got []string
	for s := SCTPNone; s < numSCTPStates; s++ {
		got = append(got, s.String())
	}
	if strings.Join(got, " ") != want || sctpInvalid.String() != "SCTP?" {
		t.Errorf("names %v", got)
	}
}

// TestCapturesEqualKernelLabels replays the crafted SCTP and GRE captures
// through a table that commits every new packet (a pass-everything
// ruleset) and compares each label with the kernel's, kept beside the
// other goldens in internal/oracle/testdata/kernel-labels. It needs no
// root: pkg/replay's TestConntrackLabelsEqualKernel asks the running
// kernel again.
func TestCapturesEqualKernelLabels(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/sctp-*.pcap")
	more, _ := filepath.Glob("../../testdata/gre-*.pcap")
	files = append(files, more...)
	if len(files) < 6 {
		t.Fatalf("captures: %v", files)
	}
	for _, f := range files {
		name := filepath.Base(f)
		want := goldenLabels(t, strings.TrimSuffix(name, ".pcap"))
		got := replayLabels(t, f)
		if len(got) != len(want) {
			t.Errorf("%s: %d packets, %d golden labels", name, len(got), len(want))
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s #%d: %s, the kernel %s", name, i, got[i], want[i])
			}
		}
	}
}

// goldenLabels reads the kernel's labels of a capture: "ct" or "ct/dir".
func goldenLabels(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("../../internal/oracle/testdata/kernel-labels", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ CT, Dir string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l.CT+"/"+l.Dir)
	}
	return out
}

// replayLabels tracks every packet of a raw-IP capture, committing the new
// ones, and returns each label as "ct/dir" in the kernel's words.
func replayLabels(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tab := New(Config{Seed: 1})
	var out []string
	for {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Packet
		p.Decode(data, packet.LinkType(rd.LinkType()))
		now := ci.Timestamp.UnixNano()
		r := tab.Track(&p, now)
		if r.Label == LabelNew {
			tab.Commit(&p, &r, now)
		}
		dir := ""
		switch {
		case r.Label == LabelInvalid || r.Label == LabelUntracked:
		case r.Reply:
			dir = "reply"
		default:
			dir = "original"
		}
		out = append(out, r.Label.String()+"/"+dir)
	}
}

// FuzzSCTP drives a small table with random SCTP packets between two
// associations' endpoints: each 8 bytes of input are a direction, a
// verification tag (one of a few, or 0), and up to three chunks of random
// type and flags, with INIT and INIT ACK headers carrying one of the tags.
// Whatever the sequence: no panic, every entry's state is a state, its
// tuples find it, the counts by kind stay exact, and a snapshot of the
// table loads back equal.
func FuzzSCTP(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0, 2, 10, 0, 0, 0, 0, 0, 1, 1, 11, 0})
	f.Add([]byte{0, 3, 4, 0, 5, 0, 0, 0, 1, 2, 5, 0, 0, 0, 0, 0, 0, 3, 0, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8*40 {
			return // long inputs only slow down minimizing
		}
		tb := newTbl(t, Config{Limit: 8, Shards: 1})
		tags := []uint32{0, cTag, sTag, 0x3333}
		ends := []string{"198.18.0.1:5001 > 198.18.0.2:6001", "198.18.0.2:6001 > 198.18.0.1:5001", "198.18.0.1:5002 > 198.18.0.2:6001"}
		var p packet.Packet
		for len(data) >= 8 {
			b := data[:8]
			data = data[8:]
			var cs []ch
			for i := range int(b[1]>>6)%3 + 1 {
				typ, flags := b[2+2*i], b[3+2*i]
				switch typ % 16 {
				case 12: // one of the tracked types more often
					typ = []uint8{sctpInit, sctpInitAck, sctpHeartbeat, sctpHeartbeatAck}[flags%4]
				case 13:
					typ = []uint8{sctpAbort, sctpShutdownComplete, sctpCookieEcho, sctpCookieAck}[flags%4]
				}
				c := ch{typ: typ, flags: flags & 1}
				if typ == sctpInit || typ == sctpInitAck {
					c = initChunk(typ, tags[flags>>1%4])
				}
				cs = append(cs, c)
			}
			p.Decode(sctpBytes(t, ends[int(b[0])%len(ends)], tags[b[1]%4], cs...), packet.LinkIP)
			r := tb.Track(&p, tb.now())
			if r.Label == LabelNew && b[0]&0x80 == 0 {
				tb.Commit(&p, &r, tb.now())
			}
			tb.advance(time.Duration(b[7]%8) * 500 * time.Millisecond)
		}
		tb.Walk(tb.now(), func(e EntryInfo) bool {
			if e.SCTPState == SCTPNone || e.SCTPState >= numSCTPStates {
				t.Fatalf("%v in state %d", e.Original, e.SCTPState)
			}
			for _, k := range []Key{e.Original, e.Reply} {
				if _, ok := tb.Get(k, tb.now()); !ok {
					t.Fatalf("%v not found from %v", e.Original, k)
				}
			}
			return true
		})
		checkCounts(t, tb.Table)
		before := rawEntries(tb.Table, tb.now())
		tab := New(Config{Limit: 8, Shards: 1})
		if _, err := tab.Load(bytes.NewReader(save(t, tb.Table, tb.now())), tb.now()); err != nil {
			t.Fatal(err)
		}
		after := rawEntries(tab, tb.now())
		if len(after) != len(before) {
			t.Fatalf("%d entries saved, %d loaded", len(before), len(after))
		}
		for k, e := range before {
			if a := after[k]; a.key != e.key || *a.sctp() != *e.sctp() || a.flags != e.flags {
				t.Fatalf("%v: loaded %+v, saved %+v", k, *a.sctp(), *e.sctp())
			}
		}
	})
}
