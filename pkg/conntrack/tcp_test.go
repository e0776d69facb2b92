package conntrack

import (
	"fmt"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
)

// A client 198.18.0.1:40000 talks to a web server 198.18.0.2:80; client
// ISN 1000, server ISN 5000.
const (
	cSyn    = "tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192"
	sSynAck = "tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001 win=8192"
	cAck    = "tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001 win=8192"
	cData   = "tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=1001 ack=5001 win=8192 len=100"
	sData   = "tcp 198.18.0.2:80 > 198.18.0.1:40000 PA seq=5001 ack=1101 win=8192 len=500"
)

func (tb *tbl) handshake() {
	tb.t.Helper()
	tb.want(cSyn, LabelNew, false)
	tb.want(sSynAck, LabelEstablished, true)
	tb.want(cAck, LabelEstablished, false)
}

func (tb *tbl) tcpState(s string) tcpstate.State {
	tb.t.Helper()
	e, ok := tb.entry(s)
	if !ok {
		return tcpstate.None
	}
	return e.TCPState
}

func TestTCPHandshake(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want(cSyn, LabelNew, false)
	if e, _ := tb.entry(cSyn); e.TCPState != tcpstate.SynSent || e.Timeout != 120*time.Second || e.SeenReply {
		t.Errorf("after SYN: %v", e)
	}
	tb.want(sSynAck, LabelEstablished, true)
	if e, _ := tb.entry(cSyn); e.TCPState != tcpstate.SynRecv || e.Timeout != 60*time.Second || !e.SeenReply || e.Assured {
		t.Errorf("after SYN/ACK: %v", e)
	}
	tb.want(cAck, LabelEstablished, false)
	e, _ := tb.entry(cSyn)
	if e.TCPState != tcpstate.Established || e.Timeout != 5*24*time.Hour || !e.Assured {
		t.Errorf("after ACK: %v", e)
	}
	if e.State() != "ESTABLISHED" || e.Packets != [2]uint64{2, 1} {
		t.Errorf("listing: %v", e)
	}
	tb.want(cData, LabelEstablished, false)
	tb.want(sData, LabelEstablished, true)
}

func TestTCPRetransmittedSYNKeepsTimer(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want(cSyn, LabelNew, false)
	tb.advance(60 * time.Second)
	tb.want(cSyn, LabelNew, false)
	if e, _ := tb.entry(cSyn); e.Timeout != 60*time.Second {
		t.Errorf("retransmitted SYN refreshed the timer: %v left", e.Timeout)
	}
	if tb.Len() != 1 {
		t.Errorf("Len %d", tb.Len())
	}
}

func TestTCPRSTAnswersSYN(t *testing.T) {
	// A closed port answers RST: the packet is established (reply) and
	// the entry goes at once.
	tb := newTbl(t, Config{})
	tb.want(cSyn, LabelNew, false)
	tb.want("tcp 198.18.0.2:80 > 198.18.0.1:40000 RA seq=0 ack=1001 win=0", LabelEstablished, true)
	if tb.Len() != 0 || tb.Stats().Deleted != 1 {
		t.Errorf("Len %d stats %+v", tb.Len(), tb.Stats())
	}
}

func TestTCPSpoofedRSTKillsHandshake(t *testing.T) {
	// Documented kernel behaviour: an RST in the reply direction before
	// any reply kills the entry, so the real SYN/ACK that follows finds
	// nothing and is invalid.
	tb := newTbl(t, Config{})
	tb.want(cSyn, LabelNew, false)
	tb.want("tcp 198.18.0.2:80 > 198.18.0.1:40000 RA seq=0 ack=1001 win=0", LabelEstablished, true)
	r := tb.Track(pkt(sSynAck), tb.now())
	if r.Label != LabelInvalid || r.Reason != ReasonTCP || r.ReasonString() == "" {
		t.Errorf("SYN/ACK after the RST: %v (%s)", r.Label, r.ReasonString())
	}
}

func TestTCPInvalidFlags(t *testing.T) {
	tb := newTbl(t, Config{})
	for _, f := range []string{"SF", "F", "", "FPU", "SR", "FR"} {
		s := "tcp 198.18.0.1:40001 > 198.18.0.2:80 " + f + " seq=1"
		if f == "" {
			s = "tcp 198.18.0.1:40001 > 198.18.0.2:80 seq=1"
		}
		r := tb.Track(pkt(s), tb.now())
		if r.Label != LabelInvalid || r.Reason != ReasonTCP || r.ReasonString() == "tcp" {
			t.Errorf("%q: %v (%s)", f, r.Label, r.ReasonString())
		}
	}
	// In any state.
	tb.handshake()
	r := tb.Track(pkt("tcp 198.18.0.1:40000 > 198.18.0.2:80 SF seq=1001"), tb.now())
	if r.Label != LabelInvalid {
		t.Errorf("SYN+FIN on an established connection: %v", r.Label)
	}
	// Neither a lone SYN/ACK nor a lone FIN/ACK nor an RST creates anything.
	for _, s := range []string{
		"tcp 198.18.0.9:80 > 198.18.0.1:40009 SA seq=1 ack=1",
		"tcp 198.18.0.9:80 > 198.18.0.1:40009 FA seq=1 ack=1",
		"tcp 198.18.0.9:80 > 198.18.0.1:40009 R seq=1",
	} {
		if r := tb.Track(pkt(s), tb.now()); r.Label != LabelInvalid {
			t.Errorf("%s: %v", s, r.Label)
		}
	}
	if tb.Len() != 1 {
		t.Errorf("Len %d", tb.Len())
	}
}

func TestTCPLoosePickup(t *testing.T) {
	// An ACK with no entry is picked up mid-stream as new (the ACK scan
	// the rules then see), and the answer makes it established.
	tb := newTbl(t, Config{})
	tb.want(cData, LabelNew, false)
	if st := tb.tcpState(cData); st != tcpstate.Established {
		t.Errorf("picked up in %v", st)
	}
	tb.want(sData, LabelEstablished, true)
	tb.want(cData, LabelEstablished, false)
}

func TestTCPSYNOnEstablishedIsIgnored(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.handshake()
	tb.advance(time.Hour)
	r := tb.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=777777 win=8192", LabelEstablished, false)
	if r.tcpReason != tcpstate.ReasonIgnored {
		t.Errorf("tcp reason %v", r.tcpReason)
	}
	// Ignored: the timer was not refreshed, the state not changed.
	if e, _ := tb.entry(cSyn); e.TCPState != tcpstate.Established || e.Timeout != 5*24*time.Hour-time.Hour {
		t.Errorf("entry %v", e)
	}
}

func TestTCPCloseAndReopen(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.handshake()
	tb.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 FA seq=1001 ack=5001 win=8192", LabelEstablished, false)
	tb.want("tcp 198.18.0.2:80 > 198.18.0.1:40000 FA seq=5001 ack=1002 win=8192", LabelEstablished, true)
	tb.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1002 ack=5002 win=8192", LabelEstablished, false)
	if e, _ := tb.entry(cSyn); e.TCPState != tcpstate.TimeWait || e.Timeout != 120*time.Second {
		t.Fatalf("after close: %v", e)
	}
	// The client reuses the port: the SYN reopens the connection.
	r := tb.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=90000 win=8192", LabelNew, false)
	if r.Reason != ReasonReopen {
		t.Errorf("reason %s", r.ReasonString())
	}
	e, ok := tb.entry(cSyn)
	if !ok || e.TCPState != tcpstate.SynSent || e.SeenReply || e.Assured || e.Packets != [2]uint64{1, 0} {
		t.Errorf("reopened entry %v", e)
	}
	if st := tb.Stats(); st.Deleted != 1 || st.Inserted != 2 || tb.Len() != 1 {
		t.Errorf("stats %+v", st)
	}
	tb.want("tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=1 ack=90001 win=8192", LabelEstablished, true)
	checkBalance(t, tb.Table)
}

func TestTCPOutOfWindow(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.handshake()
	r := tb.Track(pkt("tcp 198.18.0.1:40000 > 198.18.0.2:80 PA seq=900000 ack=5001 win=8192 len=100"), tb.now())
	if r.Label != LabelInvalid || r.tcpReason != tcpstate.ReasonSeqBeyondWindow {
		t.Errorf("data beyond the window: %v (%s)", r.Label, r.ReasonString())
	}
	// The connection goes on.
	tb.want(cData, LabelEstablished, false)
}

func TestTCPRelatedICMP(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.handshake()
	// Fragmentation needed on the way to the server, sent to the client.
	tb.want("icmp 198.18.0.9 > 198.18.0.1 type=3 code=4 [tcp 198.18.0.1:40000 > 198.18.0.2:80 seq=1001]", LabelRelated, true)
	tb.want("icmp 198.18.0.9 > 198.18.0.5 type=3 code=4 [tcp 198.18.0.1:40000 > 198.18.0.2:80 seq=1001]", LabelInvalid, false)
}

func TestTCPBadChecksum(t *testing.T) {
	ip := ipv4("198.18.0.1", "198.18.0.2", layers.IPProtocolTCP)
	syn := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, SYN: true, Window: 8192}
	if err := syn.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		mangle  func([]byte)
		cfg     Config
		want    Label
		wantWhy Reason
	}{
		{"good", nil, Config{}, LabelNew, ReasonNewConn},
		{"bad", func(b []byte) { b[20+16] ^= 0x40 }, Config{}, LabelInvalid, ReasonBadChecksum},
		{"bad, checksum off", func(b []byte) { b[20+16] ^= 0x40 }, Config{NoChecksum: true}, LabelNew, ReasonNewConn},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTbl(t, tt.cfg)
			r := tb.Track(wire(t, tt.mangle, ip, syn, gopacket.Payload(nil)), 0)
			if r.Label != tt.want || r.Reason != tt.wantWhy {
				t.Errorf("got %v (%s)", r.Label, r.ReasonString())
			}
		})
	}
}

func TestTCPSynFloodSparesAssured(t *testing.T) {
	// Established, assured connections survive a SYN flood that fills
	// the table; the flood evicts its own half-open entries.
	tb := newTbl(t, Config{Limit: 64, Shards: 1})
	tb.handshake()
	for i := range 1000 {
		p := pkt(cSyn)
		p.SrcPort = uint16(10000 + i)
		r := tb.Track(p, tb.now())
		if r.Label != LabelNew {
			t.Fatalf("flood SYN %d: %v", i, r.Label)
		}
		if !tb.Commit(p, &r, tb.now()) {
			t.Fatalf("flood SYN %d refused", i)
		}
	}
	tb.want(cData, LabelEstablished, false)
	if st := tb.Stats(); tb.Len() > 64 || st.Evicted < 900 {
		t.Errorf("Len %d stats %+v", tb.Len(), st)
	}
	checkBalance(t, tb.Table)
}

// TestTCPFullTableDropsClosingAssured: in a table full of assured entries,
// a TCP connection that is closing (here TIME_WAIT) makes room for a new
// connection, as the kernel's garbage collector drops it over 95% full
// (tcp_can_early_drop); an established one never does. Below a limit of
// 100 the kernel's 95% is 0 (max/100*95) and nothing assured goes.
func TestTCPFullTableDropsClosingAssured(t *testing.T) {
	for _, limit := range []int{100, 99} {
		tb := newTbl(t, Config{Limit: limit, Shards: 1})
		tb.handshake()
		tb.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 FA seq=1001 ack=5001 win=8192", LabelEstablished, false)
		tb.want("tcp 198.18.0.2:80 > 198.18.0.1:40000 FA seq=5001 ack=1002 win=8192", LabelEstablished, true)
		tb.want("tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1002 ack=5002 win=8192", LabelEstablished, false)
		// The rest of the table: assured UDP streams.
		for i := range limit - 1 {
			tb.want(fmt.Sprintf("udp 198.18.1.%d:5000 > 198.18.0.2:53", i), LabelNew, false)
			tb.want(fmt.Sprintf("udp 198.18.0.2:53 > 198.18.1.%d:5000", i), LabelEstablished, true)
		}
		tb.advance(3 * time.Second)
		for i := range limit - 1 {
			tb.want(fmt.Sprintf("udp 198.18.1.%d:5000 > 198.18.0.2:53", i), LabelEstablished, false)
		}
		if e, _ := tb.entry(cSyn); e.TCPState != tcpstate.TimeWait || !e.Assured || tb.Len() != limit {
			t.Fatalf("limit %d: the closed connection %v, %d entries", limit, e, tb.Len())
		}
		// New connections, from one port after another: early drop looks
		// near each one's slot, so the TIME_WAIT entry goes to the first
		// whose window holds it (with limit >= 100), and nothing else
		// ever goes: everything else is assured and alive.
		admitted := -1
		for port := 40002; port < 40002+200 && admitted < 0; port++ {
			p := pkt(fmt.Sprintf("tcp 198.18.0.1:%d > 198.18.0.2:80 S seq=1 win=8192", port))
			r := tb.Track(p, tb.now())
			if r.Reason == ReasonNewConn {
				admitted = port
				tb.Commit(p, &r, tb.now())
			}
		}
		_, closedKept := tb.entry(cSyn)
		switch {
		case limit >= 100 && (admitted < 0 || closedKept):
			t.Errorf("limit %d: admitted %d, TIME_WAIT entry kept %v; want a new connection in that entry's place", limit, admitted, closedKept)
		case limit < 100 && (admitted >= 0 || !closedKept):
			t.Errorf("limit %d: admitted %d, TIME_WAIT entry kept %v; want every new connection refused", limit, admitted, closedKept)
		}
		if st := tb.Stats(); limit >= 100 && st.Evicted != 1 {
			t.Errorf("limit %d: %d evicted, want 1 (the TIME_WAIT entry)", limit, st.Evicted)
		}
	}
}
