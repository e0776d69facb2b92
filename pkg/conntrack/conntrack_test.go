package conntrack

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/packet"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
)

const (
	dnsQuery  = "udp 198.18.0.1:5353 > 198.18.0.2:53 len=30"
	dnsAnswer = "udp 198.18.0.2:53 > 198.18.0.1:5353 len=60"
)

func TestLayout(t *testing.T) {
	// Key: no padding (practice 4). entry: the per-connection budget.
	if got := unsafe.Sizeof(Key{}); got != 38 {
		t.Errorf("Key is %d bytes, want 38", got)
	}
	if got := unsafe.Sizeof(entry{}); got != 128 {
		t.Errorf("entry is %d bytes, want 128 (two cache lines)", got)
	}
	// streamTS keeps an int64 where the TCP state starts.
	if off := unsafe.Offsetof(entry{}.tcp); off%8 != 0 || unsafe.Sizeof(tcpstate.Conn{}) < 8 {
		t.Errorf("the TCP state is at offset %d: no aligned int64 there", off)
	}
}

func TestUDPQueryAnswer(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want(dnsQuery, LabelNew, false)
	// A repeated query before the answer is new too.
	tb.advance(time.Second)
	tb.want(dnsQuery, LabelNew, false)
	tb.want(dnsAnswer, LabelEstablished, true)
	e, ok := tb.entry(dnsQuery)
	if !ok {
		t.Fatal("no entry")
	}
	if !e.SeenReply || e.Assured || e.Timeout != 30*time.Second {
		t.Errorf("after the answer: %v", e)
	}
	if e.Packets != [2]uint64{2, 1} || e.Bytes != [2]uint64{2 * 58, 88} {
		t.Errorf("counters %v %v", e.Packets, e.Bytes)
	}
	if tb.Len() != 1 {
		t.Errorf("Len %d, want 1", tb.Len())
	}
}

func TestUDPNotAssuredWithinTwoSeconds(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want(dnsQuery, LabelNew, false)
	tb.want(dnsAnswer, LabelEstablished, true)
	tb.advance(2 * time.Second) // exactly 2 s: not yet "after"
	tb.want(dnsQuery, LabelEstablished, false)
	if e, _ := tb.entry(dnsQuery); e.Assured || e.Timeout != 30*time.Second {
		t.Errorf("at 2 s: %v", e)
	}
	tb.advance(time.Millisecond)
	tb.want(dnsAnswer, LabelEstablished, true)
	if e, _ := tb.entry(dnsQuery); !e.Assured || e.Timeout != 120*time.Second {
		t.Errorf("after 2 s: %v", e)
	}
}

func TestUDPReplyOnlyAfterTwoSecondsIsNotAStream(t *testing.T) {
	// The packet that brings the first reply is handled before seen-reply
	// is set: it refreshes by 30 s and does not assure, however late.
	tb := newTbl(t, Config{})
	tb.want(dnsQuery, LabelNew, false)
	tb.advance(10 * time.Second)
	tb.want(dnsAnswer, LabelEstablished, true)
	if e, _ := tb.entry(dnsQuery); e.Assured || e.Timeout != 30*time.Second {
		t.Errorf("first reply after 10 s: %v", e)
	}
	tb.want(dnsQuery, LabelEstablished, false)
	if e, _ := tb.entry(dnsQuery); !e.Assured || e.Timeout != 120*time.Second {
		t.Errorf("next packet: %v", e)
	}
}

func TestUDPExpiry(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want(dnsQuery, LabelNew, false)
	tb.advance(30*time.Second - 1)
	if _, ok := tb.entry(dnsQuery); !ok {
		t.Fatal("expired early")
	}
	tb.advance(1)
	if _, ok := tb.entry(dnsQuery); ok {
		t.Fatal("alive at its deadline")
	}
	// The late answer finds nothing: it starts a connection of its own.
	r := tb.Track(pkt(dnsAnswer), tb.now())
	if r.Label != LabelNew || r.Reason != ReasonNewConn {
		t.Errorf("late answer: %v (%s)", r.Label, r.ReasonString())
	}
	if tb.Len() != 0 || tb.Stats().Expired != 1 {
		t.Errorf("Len %d, stats %+v", tb.Len(), tb.Stats())
	}
}

func TestUDPTimeoutsFromConfig(t *testing.T) {
	tb := newTbl(t, Config{Timeouts: Timeouts{UDP: 5 * time.Second}})
	tb.want(dnsQuery, LabelNew, false)
	tb.advance(5 * time.Second)
	tb.want(dnsQuery, LabelNew, false) // a new entry: the old one expired
	if st := tb.Stats(); st.Inserted != 2 || st.Expired != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestUDPInvalid(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.wantInvalid("udp 198.18.0.1:5353 > 198.18.0.2:53 l4len=6 udplen=6", ReasonShortHeader)
	tb.wantInvalid("udp 198.18.0.1:5353 > 198.18.0.2:53 len=10 udplen=19", ReasonBadLength)
	tb.wantInvalid("udp 198.18.0.1:5353 > 198.18.0.2:53 len=10 udplen=7", ReasonBadLength)
	// A length field shorter than the IP payload is fine (padding).
	tb.want("udp 198.18.0.1:5353 > 198.18.0.2:53 len=10 udplen=12", LabelNew, false)
	if got := tb.Stats().Invalid; got != 3 {
		t.Errorf("Invalid = %d, want 3", got)
	}
}

// wire builds a packet's bytes with gopacket (lengths and checksums
// computed), lets mangle change them, and decodes them.
func wire(t *testing.T, mangle func(b []byte), ls ...gopacket.SerializableLayer) *packet.Packet {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	if mangle != nil {
		mangle(b)
	}
	p := new(packet.Packet)
	p.Decode(b, packet.LinkRaw)
	if p.Kind != packet.KindOK {
		t.Fatalf("decode: %v", p.Kind)
	}
	return p
}

func ipv4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ipv6(src, dst string, nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

func udpLayer(sport, dport uint16, nl gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := u.SetNetworkLayerForChecksum(nl); err != nil {
		panic(err)
	}
	return u
}

func TestChecksums(t *testing.T) {
	v4 := func() *layers.IPv4 { return ipv4("198.18.0.1", "198.18.0.2", layers.IPProtocolUDP) }
	v6 := func() *layers.IPv6 { return ipv6("2001:db8::1", "2001:db8::2", layers.IPProtocolUDP) }
	payload := gopacket.Payload("hello")
	udpSum := func(ipHdr int, v uint16) func([]byte) {
		return func(b []byte) { b[ipHdr+6], b[ipHdr+7] = byte(v>>8), byte(v) }
	}
	flip := func(ipHdr int) func([]byte) { return func(b []byte) { b[ipHdr+8] ^= 0xff } }
	icmpFlip := func(b []byte) { b[len(b)-1] ^= 1 }
	echo := func() []gopacket.SerializableLayer {
		return []gopacket.SerializableLayer{ipv4("198.18.0.1", "198.18.0.2", layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, payload}
	}
	tests := []struct {
		name     string
		cfg      Config
		p        func() *packet.Packet
		want     Label
		wantWhy  Reason
		trackErr bool
	}{
		{"udp4 good", Config{}, func() *packet.Packet { ip := v4(); return wire(t, nil, ip, udpLayer(5353, 53, ip), payload) }, LabelNew, ReasonNewConn, false},
		{"udp4 bad", Config{}, func() *packet.Packet { ip := v4(); return wire(t, flip(20), ip, udpLayer(5353, 53, ip), payload) }, LabelInvalid, ReasonBadChecksum, false},
		{"udp4 bad, checksum off", Config{NoChecksum: true}, func() *packet.Packet { ip := v4(); return wire(t, flip(20), ip, udpLayer(5353, 53, ip), payload) }, LabelNew, ReasonNewConn, false},
		{"udp4 zero", Config{}, func() *packet.Packet { ip := v4(); return wire(t, udpSum(20, 0), ip, udpLayer(5353, 53, ip), payload) }, LabelNew, ReasonNewConn, false},
		{"udp6 bad", Config{}, func() *packet.Packet { ip := v6(); return wire(t, flip(40), ip, udpLayer(5353, 53, ip), payload) }, LabelInvalid, ReasonBadChecksum, false},
		// Conntrack lets a zero UDP checksum through on IPv6 too
		// (udp_error: "Packet with no checksum").
		{"udp6 zero", Config{}, func() *packet.Packet { ip := v6(); return wire(t, udpSum(40, 0), ip, udpLayer(5353, 53, ip), payload) }, LabelNew, ReasonNewConn, false},
		{"icmp echo good", Config{}, func() *packet.Packet { return wire(t, nil, echo()...) }, LabelNew, ReasonNewConn, false},
		{"icmp echo bad", Config{}, func() *packet.Packet { return wire(t, icmpFlip, echo()...) }, LabelInvalid, ReasonBadChecksum, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTbl(t, tt.cfg)
			r := tb.Track(tt.p(), 0)
			if r.Label != tt.want || r.Reason != tt.wantWhy {
				t.Errorf("got %v (%s), want %v (%s)", r.Label, r.ReasonString(), tt.want, tt.wantWhy)
			}
		})
	}
}

func TestICMPErrorBadChecksum(t *testing.T) {
	// The kernel checks the checksum of errors before looking at the
	// quote: a corrupted error about a real connection is invalid.
	tb := newTbl(t, Config{})
	ip := ipv4("198.18.0.1", "198.18.0.2", layers.IPProtocolUDP)
	query := wire(t, nil, ip, udpLayer(5353, 53, ip), gopacket.Payload("q"))
	r := tb.Track(query, 0)
	if !tb.Commit(query, &r, 0) {
		t.Fatal("commit")
	}
	quoted := query.Data[:28]
	errLayers := func() []gopacket.SerializableLayer {
		return []gopacket.SerializableLayer{ipv4("198.18.0.9", "198.18.0.1", layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(quoted)}
	}
	if r := tb.Track(wire(t, nil, errLayers()...), 0); r.Label != LabelRelated || !r.Reply {
		t.Errorf("good error: %v reply=%v (%s)", r.Label, r.Reply, r.ReasonString())
	}
	bad := wire(t, func(b []byte) { b[20+2] ^= 0x55 }, errLayers()...)
	if r := tb.Track(bad, 0); r.Label != LabelInvalid || r.Reason != ReasonBadChecksum {
		t.Errorf("corrupted error: %v (%s)", r.Label, r.ReasonString())
	}
}

func TestICMPEcho(t *testing.T) {
	tb := newTbl(t, Config{})
	const (
		req   = "icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=1 len=56"
		reply = "icmp 198.18.0.2 > 198.18.0.1 type=0 id=7 seq=1 len=56"
	)
	tb.want(req, LabelNew, false)
	tb.want(reply, LabelEstablished, true)
	// A reply does not end the entry: a duplicate is still established.
	tb.want(reply, LabelEstablished, true)
	tb.want("icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=2 len=56", LabelEstablished, false)
	e, ok := tb.entry(reply)
	if !ok || e.Timeout != 30*time.Second || e.Assured || !e.SeenReply {
		t.Fatalf("entry %v %v", e, ok)
	}
	if e.Reply.ICMPType() != 0 || e.Original.ICMPType() != 8 || e.Reply.ICMPID() != 7 {
		t.Errorf("tuples %v / %v", e.Original, e.Reply)
	}
	// Another identifier is another connection.
	tb.wantInvalid("icmp 198.18.0.2 > 198.18.0.1 type=0 id=8", ReasonReplyNoRequest)
	// The code is part of the tuple.
	tb.wantInvalid("icmp 198.18.0.2 > 198.18.0.1 type=0 code=1 id=7", ReasonReplyNoRequest)
	tb.advance(30 * time.Second)
	tb.wantInvalid(reply, ReasonReplyNoRequest)
}

func TestICMPQueryPairs(t *testing.T) {
	pairs := []struct {
		proto, src, dst string
		req, rep        int
	}{
		{"icmp", "198.18.0.1", "198.18.0.2", 13, 14},
		{"icmp", "198.18.0.1", "198.18.0.2", 15, 16},
		{"icmp", "198.18.0.1", "198.18.0.2", 17, 18},
		{"icmp6", "2001:db8::1", "2001:db8::2", 128, 129},
		{"icmp6", "2001:db8::1", "2001:db8::2", 139, 140},
	}
	for _, pr := range pairs {
		t.Run(fmt.Sprintf("%s-%d", pr.proto, pr.req), func(t *testing.T) {
			tb := newTbl(t, Config{})
			tb.wantInvalid(fmt.Sprintf("%s %s > %s type=%d id=1", pr.proto, pr.dst, pr.src, pr.rep), ReasonReplyNoRequest)
			tb.want(fmt.Sprintf("%s %s > %s type=%d id=1", pr.proto, pr.src, pr.dst, pr.req), LabelNew, false)
			tb.want(fmt.Sprintf("%s %s > %s type=%d id=1", pr.proto, pr.dst, pr.src, pr.rep), LabelEstablished, true)
		})
	}
}

func TestICMPInvalidTypes(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.wantInvalid("icmp 198.18.0.1 > 198.18.0.2 type=19", ReasonICMPType)
	tb.wantInvalid("icmp 198.18.0.1 > 198.18.0.2 type=42", ReasonICMPType)
	tb.wantInvalid("icmp 198.18.0.1 > 198.18.0.2 type=9", ReasonICMPUnsolicited)  // router advertisement
	tb.wantInvalid("icmp 198.18.0.1 > 198.18.0.2 type=10", ReasonICMPUnsolicited) // router solicitation
	tb.wantInvalid("icmp6 2001:db8::1 > 2001:db8::2 type=137", ReasonICMPUnsolicited)
	tb.wantInvalid("icmp6 2001:db8::1 > 2001:db8::2 type=200", ReasonICMPUnsolicited)
	tb.wantInvalid("icmp 2001:db8::1 > 2001:db8::2 type=8", ReasonICMPFamily)
	tb.wantInvalid("icmp6 198.18.0.1 > 198.18.0.2 type=128", ReasonICMPFamily)
	tb.wantInvalid("icmp 198.18.0.1 > 198.18.0.2 type=8 l4len=4", ReasonShortHeader)
	if tb.Len() != 0 {
		t.Errorf("Len %d", tb.Len())
	}
}

func TestICMPv6NDUntracked(t *testing.T) {
	tb := newTbl(t, Config{})
	for _, typ := range []int{130, 131, 132, 133, 134, 135, 136, 143, 151, 152} {
		r := tb.see(fmt.Sprintf("icmp6 fe80::1 > ff02::1 type=%d", typ))
		if r.Label != LabelUntracked {
			t.Errorf("type %d: %v (%s)", typ, r.Label, r.ReasonString())
		}
	}
	if tb.Len() != 0 {
		t.Errorf("ND created %d entries", tb.Len())
	}
}

func TestICMPErrorRelated(t *testing.T) {
	const (
		query    = "udp 198.18.0.1:5353 > 198.18.0.2:53"
		answer   = "udp 198.18.0.2:53 > 198.18.0.1:5353"
		quoteQ   = "[udp 198.18.0.1:5353 > 198.18.0.2:53]"
		quoteA   = "[udp 198.18.0.2:53 > 198.18.0.1:5353]"
		ping     = "icmp 198.18.0.1 > 198.18.0.2 type=8 id=9"
		quotePng = "[icmp 198.18.0.1 > 198.18.0.2 type=8 id=9]"
	)
	tests := []struct {
		name  string
		err   string
		label Label
		reply bool
		why   Reason
	}{
		// A router on the way tells the client its query went nowhere.
		{"unreachable to client", "icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 " + quoteQ, LabelRelated, true, ReasonICMPError},
		{"from the server itself", "icmp 198.18.0.2 > 198.18.0.1 type=3 code=3 " + quoteQ, LabelRelated, true, ReasonICMPError},
		{"time exceeded", "icmp 198.18.0.9 > 198.18.0.1 type=11 " + quoteQ, LabelRelated, true, ReasonICMPError},
		{"source quench", "icmp 198.18.0.9 > 198.18.0.1 type=4 " + quoteQ, LabelRelated, true, ReasonICMPError},
		{"redirect", "icmp 198.18.0.9 > 198.18.0.1 type=5 " + quoteQ, LabelRelated, true, ReasonICMPError},
		{"parameter problem", "icmp 198.18.0.9 > 198.18.0.1 type=12 " + quoteQ, LabelRelated, true, ReasonICMPError},
		// An error about the server's answer, sent to the server: the
		// original direction.
		{"error to server", "icmp 198.18.0.1 > 198.18.0.2 type=3 code=3 " + quoteA, LabelRelated, false, ReasonICMPError},
		{"about a ping", "icmp 198.18.0.9 > 198.18.0.1 type=11 " + quotePng, LabelRelated, true, ReasonICMPError},
		// The quote is right but the error goes to a third host.
		{"outer dst third host", "icmp 198.18.0.9 > 198.18.0.77 type=3 code=3 " + quoteQ, LabelInvalid, false, ReasonErrorOuterDst},
		// The quote's destination (the server) is not where the error
		// about the client's packet goes.
		{"outer dst is server", "icmp 198.18.0.9 > 198.18.0.2 type=3 code=3 " + quoteQ, LabelInvalid, false, ReasonErrorOuterDst},
		{"unknown connection", "icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:54]", LabelInvalid, false, ReasonErrorUnknownConn},
		{"other protocol", "icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [tcp 198.18.0.1:5353 > 198.18.0.2:53]", LabelInvalid, false, ReasonErrorUnknownConn},
		{"no quote", "icmp 198.18.0.9 > 198.18.0.1 type=3 code=3", LabelInvalid, false, ReasonErrorNoQuote},
		{"quote of an error", "icmp 198.18.0.9 > 198.18.0.1 type=3 [icmp 198.18.0.1 > 198.18.0.2 type=3]", LabelInvalid, false, ReasonErrorUnknownConn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTbl(t, Config{})
			tb.want(query, LabelNew, false)
			tb.want(answer, LabelEstablished, true)
			tb.want(ping, LabelNew, false)
			before, _ := tb.entry(query)
			tb.advance(time.Second)
			r := tb.see(tt.err)
			if r.Label != tt.label || r.Reply != tt.reply || r.Reason != tt.why {
				t.Errorf("got %v reply=%v (%s), want %v reply=%v (%s)", r.Label, r.Reply, r.ReasonString(), tt.label, tt.reply, tt.why)
			}
			// An error refreshes and counts nothing.
			after, _ := tb.entry(query)
			if after.Packets != before.Packets || after.Timeout != before.Timeout-time.Second {
				t.Errorf("entry changed: %v -> %v", before, after)
			}
			if tb.Len() != 2 {
				t.Errorf("Len %d", tb.Len())
			}
		})
	}
}

func TestICMPv6ErrorRelated(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want("udp [2001:db8::1]:5353 > [2001:db8::2]:53", LabelNew, false)
	quote := " [udp [2001:db8::1]:5353 > [2001:db8::2]:53]"
	for typ := 1; typ <= 4; typ++ {
		tb.want(fmt.Sprintf("icmp6 2001:db8::9 > 2001:db8::1 type=%d", typ)+quote, LabelRelated, true)
	}
	tb.wantInvalid("icmp6 2001:db8::9 > 2001:db8::7 type=1"+quote, ReasonErrorOuterDst)
	tb.wantInvalid("icmp6 2001:db8::9 > 2001:db8::1 type=1 [udp [2001:db8::1]:5353 > [2001:db8::2]:54]", ReasonErrorUnknownConn)
}

func TestGeneric(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want("proto=50 198.18.0.1 > 198.18.0.2", LabelNew, false)
	tb.want("proto=50 198.18.0.1 > 198.18.0.2", LabelNew, false)
	tb.want("proto=50 198.18.0.2 > 198.18.0.1", LabelEstablished, true)
	tb.want("proto=50 198.18.0.1 > 198.18.0.2", LabelEstablished, false)
	// Another protocol between the same hosts is another connection.
	tb.want("proto=33 198.18.0.1 > 198.18.0.2", LabelNew, false)
	e, ok := tb.entry("proto=50 198.18.0.2 > 198.18.0.1")
	if !ok || e.Timeout != 600*time.Second || e.Assured || e.State() != "" {
		t.Errorf("entry %v", e)
	}
	tb.advance(600 * time.Second)
	tb.want("proto=50 198.18.0.2 > 198.18.0.1", LabelNew, false)
}

func TestUDPLite(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want("udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=0", LabelNew, false)
	tb.want("udplite 198.18.0.2:6000 > 198.18.0.1:5000 len=20 udplen=12", LabelEstablished, true)
	tb.want("udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=0", LabelEstablished, false)
	if e, _ := tb.entry("udplite 198.18.0.1:5000 > 198.18.0.2:6000"); !e.Assured || e.Timeout != 120*time.Second {
		t.Errorf("entry %v", e)
	}
	tb.wantInvalid("udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=40", ReasonBadLength)
}

func TestNotDecoded(t *testing.T) {
	tb := newTbl(t, Config{})
	p := pkt(dnsQuery)
	p.Kind = packet.KindTruncated
	if r := tb.Track(p, 0); r.Label != LabelInvalid || r.Reason != ReasonNotDecoded {
		t.Errorf("truncated: %v", r.Label)
	}
	p = pkt(dnsQuery)
	p.Frag = packet.Fragment{IsFragment: true, More: true}
	if r := tb.Track(p, 0); r.Label != LabelInvalid {
		t.Errorf("fragment: %v", r.Label)
	}
}

func TestRuleDropLeavesNoState(t *testing.T) {
	tb := newTbl(t, Config{})
	// Track without Commit: the rules dropped the query.
	if r := tb.Track(pkt(dnsQuery), 0); r.Label != LabelNew {
		t.Fatal(r.Label)
	}
	if tb.Len() != 0 {
		t.Fatal("state left behind")
	}
	// So the answer is not established.
	if r := tb.Track(pkt(dnsAnswer), 0); r.Label != LabelNew {
		t.Errorf("answer: %v", r.Label)
	}
}

func TestCommitClash(t *testing.T) {
	// Two workers see the first two packets of a flow before either
	// commits: one entry, and both packets pass.
	tb := newTbl(t, Config{})
	p1, p2 := pkt(dnsQuery), pkt(dnsQuery)
	r1, r2 := tb.Track(p1, 0), tb.Track(p2, 0)
	if !tb.Commit(p1, &r1, 0) || !tb.Commit(p2, &r2, 0) {
		t.Fatal("commit refused")
	}
	if st := tb.Stats(); tb.Len() != 1 || st.Inserted != 1 || st.Clash != 1 {
		t.Errorf("Len %d stats %+v", tb.Len(), st)
	}
	// Committing an established packet's result is a no-op.
	p3 := pkt(dnsAnswer)
	r3 := tb.Track(p3, 0)
	if !tb.Commit(p3, &r3, 0) || tb.Len() != 1 {
		t.Error("commit of an established packet")
	}
}

func TestReplyTupleLookup(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want(dnsQuery, LabelNew, false)
	orig := NewKey(packet.ProtoUDP, netip.MustParseAddrPort("198.18.0.1:5353"), netip.MustParseAddrPort("198.18.0.2:53"))
	rep := orig.Reply()
	if rep.Src() != netip.MustParseAddr("198.18.0.2") || rep.SrcPort() != 53 || rep.DstPort() != 5353 || rep.Reply() != orig {
		t.Fatalf("Reply of %v is %v", orig, rep)
	}
	for _, k := range []Key{orig, rep} {
		e, ok := tb.Get(k, 0)
		if !ok || e.Original != orig || e.Reply != rep {
			t.Errorf("Get(%v) = %v, %v", k, e, ok)
		}
	}
	icmp := NewICMPKey(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 128, 0, 5)
	if r := icmp.Reply(); r.ICMPType() != 129 || r.ICMPID() != 5 || r.Proto() != packet.ProtoICMPv6 || r.Reply() != icmp {
		t.Errorf("ICMPv6 reply %v", r)
	}
}

func TestHashSymmetric(t *testing.T) {
	h := newHasher(42)
	rng := rand.New(rand.NewPCG(1, 2))
	addr := func(v6 bool) netip.Addr {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if v6 {
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	for i := 0; i < 10000; i++ {
		v6 := i%2 == 0
		var k Key
		switch i % 3 {
		case 0:
			k = NewKey(packet.ProtoTCP, netip.AddrPortFrom(addr(v6), uint16(rng.Uint32())), netip.AddrPortFrom(addr(v6), uint16(rng.Uint32())))
		case 1:
			typ := []uint8{8, 0, 13, 14, 15, 16, 17, 18, 128, 129, 139, 140}[rng.IntN(12)]
			k = NewICMPKey(addr(typ >= 128), addr(typ >= 128), typ, uint8(rng.IntN(3)), uint16(rng.Uint32()))
		case 2:
			k = NewKey(packet.ProtoGRE, netip.AddrPortFrom(addr(v6), 0), netip.AddrPortFrom(addr(v6), 0))
		}
		if a, b := h.sum(&k), k.Reply(); a != h.sum(&b) {
			t.Fatalf("%v and its reply %v hash differently", k, b)
		}
	}
	// Swapping the ports alone changes the hash.
	a := NewKey(packet.ProtoUDP, netip.MustParseAddrPort("198.18.0.1:1"), netip.MustParseAddrPort("198.18.0.2:2"))
	b := NewKey(packet.ProtoUDP, netip.MustParseAddrPort("198.18.0.1:2"), netip.MustParseAddrPort("198.18.0.2:1"))
	if h.sum(&a) == h.sum(&b) {
		t.Error("port swap collides")
	}
}

func TestLimitEvictsUnassured(t *testing.T) {
	tb := newTbl(t, Config{Limit: 8, Shards: 1})
	for i := range 8 {
		tb.want(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 1000+i), LabelNew, false)
	}
	// Full: the next connection evicts one unreplied entry.
	r := tb.want("udp 198.18.0.1:2000 > 198.18.0.2:53", LabelNew, false)
	if r.Reason != ReasonNewConn {
		t.Errorf("reason %s", r.ReasonString())
	}
	if _, ok := tb.entry("udp 198.18.0.1:2000 > 198.18.0.2:53"); !ok {
		t.Error("new connection not stored")
	}
	if st := tb.Stats(); tb.Len() != 8 || st.Evicted != 1 || st.Refused != 0 {
		t.Errorf("Len %d stats %+v", tb.Len(), st)
	}
}

func TestLimitRefusesWhenAllAssured(t *testing.T) {
	tb := newTbl(t, Config{Limit: 8, Shards: 1})
	for i := range 8 {
		q := fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 1000+i)
		tb.want(q, LabelNew, false)
		tb.want(fmt.Sprintf("udp 198.18.0.2:53 > 198.18.0.1:%d", 1000+i), LabelEstablished, true)
	}
	tb.advance(3 * time.Second)
	for i := range 8 {
		tb.want(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 1000+i), LabelEstablished, false)
	}
	p := pkt("udp 198.18.0.1:2000 > 198.18.0.2:53")
	r := tb.Track(p, tb.now())
	if r.Label != LabelNew || r.Reason != ReasonTableFull {
		t.Errorf("Track: %v (%s)", r.Label, r.ReasonString())
	}
	if tb.Commit(p, &r, tb.now()) {
		t.Error("Commit accepted a connection in a full table of assured entries")
	}
	if st := tb.Stats(); tb.Len() != 8 || st.Refused != 1 || st.Evicted != 0 {
		t.Errorf("Len %d stats %+v", tb.Len(), st)
	}
	// Established flows keep passing.
	tb.want("udp 198.18.0.2:53 > 198.18.0.1:1003", LabelEstablished, true)
	// Once an entry expires there is room again.
	tb.advance(121 * time.Second)
	tb.want("udp 198.18.0.1:2000 > 198.18.0.2:53", LabelNew, false)
	if _, ok := tb.entry("udp 198.18.0.1:2000 > 198.18.0.2:53"); !ok {
		t.Error("not stored after expiry made room")
	}
}

func TestWalk(t *testing.T) {
	tb := newTbl(t, Config{})
	tb.want(dnsQuery, LabelNew, false)
	tb.want(dnsAnswer, LabelEstablished, true)
	tb.want("icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 len=56", LabelNew, false)
	tb.want("proto=50 198.18.0.1 > 198.18.0.3", LabelNew, false)
	tb.advance(1500 * time.Millisecond)
	var lines []string
	tb.Walk(tb.now(), func(e EntryInfo) bool {
		lines = append(lines, e.String())
		return true
	})
	want := []string{
		"icmp     1 28 src=198.18.0.1 dst=198.18.0.2 type=8 code=0 id=7 packets=1 bytes=84 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 type=0 code=0 id=7 packets=0 bytes=0",
		"udp      17 28 src=198.18.0.1 dst=198.18.0.2 sport=5353 dport=53 packets=1 bytes=58 src=198.18.0.2 dst=198.18.0.1 sport=53 dport=5353 packets=1 bytes=88",
		"unknown  50 598 src=198.18.0.1 dst=198.18.0.3 packets=1 bytes=28 [UNREPLIED] src=198.18.0.3 dst=198.18.0.1 packets=0 bytes=0",
	}
	if strings.Join(sorted(lines), "\n") != strings.Join(want, "\n") {
		t.Errorf("Walk:\n%s\nwant:\n%s", strings.Join(sorted(lines), "\n"), strings.Join(want, "\n"))
	}
	// Stopping early.
	n := 0
	tb.Walk(tb.now(), func(EntryInfo) bool { n++; return false })
	if n != 1 {
		t.Errorf("Walk went on after false: %d", n)
	}
	// Expired entries are not listed.
	tb.advance(29 * time.Second)
	n = 0
	tb.Walk(tb.now(), func(EntryInfo) bool { n++; return true })
	if n != 1 {
		t.Errorf("Walk listed %d entries, want 1 (esp)", n)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// shardMemory is what the shards hold: slots and slab entries (of a
// mapped slab, those whose pages are backed).
func (t *Table) shardMemory() (slots, entries int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		slots += len(s.slots)
		if s.mapping != nil {
			entries += int(residentBytes(s.used) / entrySize)
		} else {
			entries += int(s.cap)
		}
		s.mu.Unlock()
	}
	return slots, entries
}

func TestSweepReclaimsMemory(t *testing.T) {
	tb := newTbl(t, Config{Shards: 4})
	const n = 50000
	for i := range n {
		p := pkt("udp 198.18.0.1:1 > 198.18.0.2:53")
		p.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r := tb.Track(p, tb.now())
		if !tb.Commit(p, &r, tb.now()) {
			t.Fatal("refused")
		}
	}
	slots, entries := tb.shardMemory()
	if tb.Len() != n || entries < n || slots < n {
		t.Fatalf("Len %d slots %d entries %d", tb.Len(), slots, entries)
	}
	tb.advance(31 * time.Second)
	if got := tb.Sweep(tb.now()); got != n {
		t.Errorf("Sweep reaped %d, want %d", got, n)
	}
	slots, entries = tb.shardMemory()
	if tb.Len() != 0 || entries != 0 || slots > 4*minSlots {
		t.Errorf("after Sweep: Len %d slots %d entries %d", tb.Len(), slots, entries)
	}
}

func TestIncrementalSweep(t *testing.T) {
	// Traffic on one flow reaps the dead entries of its shard, and gives
	// the memory back, without anyone calling Sweep.
	tb := newTbl(t, Config{Shards: 1})
	const n = 5000
	for i := range n {
		p := pkt("gre 198.18.0.1 > 198.18.0.2")
		p.Src = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		r := tb.Track(p, tb.now())
		tb.Commit(p, &r, tb.now())
	}
	tb.want(dnsQuery, LabelNew, false)
	tb.advance(601 * time.Second)
	// One round of the hand over 8192 slots, plus one slot visit for
	// each entry reaped (the hand stays on a slot refilled by the shift),
	// with margin.
	for range 2 * sweepEvery * (8192 + n) / sweepSlots {
		tb.see(dnsQuery)
	}
	// The query's own entry expired too and was made again.
	if tb.Len() != 1 || tb.Stats().Expired != n+1 {
		t.Errorf("Len %d, stats %+v", tb.Len(), tb.Stats())
	}
	if slots, entries := tb.shardMemory(); slots > minSlots || entries > 4*slabMin {
		t.Errorf("slots %d entries %d", slots, entries)
	}
}

func TestChurnMatchesModel(t *testing.T) {
	// Random inserts, expiries and lookups against a map: deletion by
	// backward shift must keep every surviving key reachable.
	tb := newTbl(t, Config{Shards: 1, Limit: 1 << 20, Timeouts: Timeouts{Generic: 10 * time.Second}})
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[netip.Addr]int64{} // source -> expiry
	mk := func(a netip.Addr) *packet.Packet {
		p := pkt("proto=50 198.18.0.1 > 198.18.0.2")
		p.Src = a
		return p
	}
	for step := range 200000 {
		tb.advance(time.Duration(rng.IntN(int(time.Millisecond))))
		a := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(8)), byte(rng.IntN(256))})
		exp, ok := model[a]
		alive := ok && tb.now() < exp
		r := tb.Track(mk(a), tb.now())
		switch {
		case alive && r.Label != LabelNew || alive && r.Reason != ReasonUnreplied:
			t.Fatalf("step %d: %v alive, got %v (%s)", step, a, r.Label, r.ReasonString())
		case !alive && r.Reason != ReasonNewConn:
			t.Fatalf("step %d: %v dead, got %v (%s)", step, a, r.Label, r.ReasonString())
		}
		if !alive && rng.IntN(2) == 0 {
			tb.Commit(mk(a), &r, tb.now())
		}
		if alive || r.insert == false {
			model[a] = tb.now() + int64(10*time.Second)
		} else {
			delete(model, a)
		}
		if step%50000 == 0 {
			tb.Sweep(tb.now())
		}
	}
	live := 0
	for _, exp := range model {
		if tb.now() < exp {
			live++
		}
	}
	tb.Sweep(tb.now())
	if tb.Len() != live {
		t.Errorf("Len %d, model %d", tb.Len(), live)
	}
	checkBalance(t, tb.Table)
}

func TestConcurrent(t *testing.T) {
	// Several workers on their own flows, with Walk, Stats and Sweep
	// running alongside: run with -race.
	// The limit is above the 8*2300 connections made: no eviction, so
	// every answer finds its query.
	tb := New(Config{Seed: 9, Limit: 20000, Shards: 8})
	var clk sync.Mutex
	now := int64(0)
	tick := func() int64 {
		clk.Lock()
		defer clk.Unlock()
		now += int64(time.Millisecond)
		return now
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				port := uint16(1000 + i%300)
				q := pkt(fmt.Sprintf("udp 198.18.1.%d:%d > 198.18.0.2:53", w, port))
				a := pkt(fmt.Sprintf("udp 198.18.0.2:53 > 198.18.1.%d:%d", w, port))
				ts := tick()
				r := tb.Track(q, ts)
				if r.Label == LabelNew {
					tb.Commit(q, &r, ts)
				}
				if r := tb.Track(a, ts); r.Label != LabelEstablished {
					t.Errorf("worker %d: answer %v (%s)", w, r.Label, r.ReasonString())
					return
				}
				e := pkt(fmt.Sprintf("icmp 198.18.1.%d > 198.18.0.2 type=8 id=%d", w, i))
				if r := tb.Track(e, ts); r.Label == LabelNew {
					tb.Commit(e, &r, ts)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			ts := tick()
			tb.Walk(ts, func(EntryInfo) bool { return true })
			tb.Stats()
			tb.Sweep(ts)
		}
	}()
	wg.Wait()
	checkBalance(t, tb)
}

// checkBalance checks that every entry is accounted for: inserted ones are
// still there or were evicted, expired or deleted.
func checkBalance(t *testing.T, tb *Table) {
	t.Helper()
	st := tb.Stats()
	if got := st.Inserted - st.Evicted - st.Expired - st.Deleted; got != st.Entries || int(got) != tb.Len() {
		t.Errorf("Len %d, stats %+v: inserted-evicted-expired-deleted = %d", tb.Len(), st, got)
	}
	n := 0
	tb.Walk(-1<<62, func(EntryInfo) bool { n++; return true })
	if n != tb.Len() {
		t.Errorf("Walk saw %d entries, Len is %d", n, tb.Len())
	}
	checkCounts(t, tb)
}

// checkCounts checks the counts by kind against a walk of the live
// entries.
func checkCounts(t *testing.T, tb *Table) {
	t.Helper()
	got := map[string]int{}
	for _, c := range tb.Counts(-1 << 62) {
		if c.N <= 0 {
			t.Errorf("Counts: %d entries of %d/%s", c.N, c.Proto, c.State)
		}
		got[fmt.Sprintf("%d/%s", c.Proto, c.State)] += c.N
	}
	want := map[string]int{}
	tb.Walk(-1<<62, func(e EntryInfo) bool {
		want[fmt.Sprintf("%d/%s", e.Proto(), e.StateName())]++
		return true
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Counts %v, a walk counts %v", got, want)
	}
}

func TestConcurrentFullTable(t *testing.T) {
	// Workers flood a small table with new connections of every kind
	// while others track established ones: the limit holds and every
	// entry is accounted for.
	const limit = 512
	tb := New(Config{Seed: 9, Limit: limit, Shards: 4, Timeouts: Timeouts{ICMP: time.Second}})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 5000 {
				now := int64(i) * int64(time.Millisecond)
				var s string
				switch rng.IntN(4) {
				case 0:
					s = fmt.Sprintf("udp 198.18.%d.%d:%d > 198.18.0.2:53", w, rng.IntN(256), 1000+rng.IntN(50))
				case 1:
					s = fmt.Sprintf("udp 198.18.0.2:53 > 198.18.%d.%d:%d", w, rng.IntN(256), 1000+rng.IntN(50))
				case 2:
					s = fmt.Sprintf("icmp 198.18.%d.%d > 198.18.0.2 type=8 id=%d", w, rng.IntN(256), rng.IntN(100))
				case 3:
					s = fmt.Sprintf("proto=%d 198.18.%d.%d > 198.18.0.2", 40+rng.IntN(10), w, rng.IntN(256))
				}
				p := pkt(s)
				if r := tb.Track(p, now); r.Label == LabelNew {
					tb.Commit(p, &r, now)
				}
			}
		}()
	}
	wg.Wait()
	if tb.Len() > limit {
		t.Errorf("Len %d over the limit %d", tb.Len(), limit)
	}
	if st := tb.Stats(); st.Evicted == 0 {
		t.Errorf("no eviction: %+v", st)
	}
	checkBalance(t, tb)
}

func TestNoAllocs(t *testing.T) {
	// Track on a known connection, both directions, as Go's netip does for
	// its hot paths: allocation counts are tests.
	flows := []struct {
		name  string
		setup []string // packets that establish the flow
		pkts  []string // the packets measured
	}{
		{"tcp", []string{cSyn, sSynAck, cAck}, []string{cData, sData}},
		{"udp", []string{dnsQuery, dnsAnswer}, []string{dnsQuery, dnsAnswer}},
		{"icmp", []string{"icmp 198.18.0.1 > 198.18.0.2 type=8 id=7"}, []string{"icmp 198.18.0.1 > 198.18.0.2 type=8 id=7", "icmp 198.18.0.2 > 198.18.0.1 type=0 id=7"}},
		{"icmp error", []string{dnsQuery}, []string{"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53]"}},
		{"generic", []string{"proto=50 198.18.0.1 > 198.18.0.2"}, []string{"proto=50 198.18.0.1 > 198.18.0.2", "proto=50 198.18.0.2 > 198.18.0.1"}},
	}
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			tb := newTbl(t, Config{})
			for _, s := range f.setup {
				tb.see(s)
			}
			var ps []*packet.Packet
			for _, s := range f.pkts {
				ps = append(ps, pkt(s))
			}
			allocs := testing.AllocsPerRun(1000, func() {
				for _, p := range ps {
					if r := tb.Track(p, tb.now()); r.Label == LabelInvalid || r.Label == LabelNew && r.insert {
						t.Fatalf("%v: %v (%s)", p, r.Label, r.ReasonString())
					}
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocs per run", allocs)
			}
		})
	}
}

func TestLabelAndReasonStrings(t *testing.T) {
	for l := LabelNew; l <= LabelUntracked; l++ {
		if s := l.String(); s == "" || s == "label?" {
			t.Errorf("Label %d has no name", l)
		}
	}
	for r := ReasonNone + 1; r < numReasons; r++ {
		if s := r.String(); s == "" || s == "reason?" {
			t.Errorf("Reason %d has no text", r)
		}
	}
	if got := (Result{Label: LabelInvalid, Reason: ReasonBadChecksum}).ReasonString(); got != "bad checksum" {
		t.Errorf("ReasonString %q", got)
	}
}

func TestResultSize(t *testing.T) {
	if got := unsafe.Sizeof(Result{}); got != 32 {
		t.Errorf("Result is %d bytes; update its comment", got)
	}
	if got := unsafe.Sizeof(Summary{}); got != 5 {
		t.Errorf("Summary is %d bytes; update its comment (engine.Decision carries one)", got)
	}
}

func TestShardCount(t *testing.T) {
	for _, tt := range []struct{ limit, shards, want int }{
		{0, 0, 64},
		{262144, 0, 64},
		{1000, 0, 8},
		{8, 0, 1},
		{8, 3, 4},
		{1 << 30, 0, 256},
	} {
		if got := len(New(Config{Limit: tt.limit, Shards: tt.shards}).shards); got != tt.want {
			t.Errorf("Limit %d Shards %d: %d shards, want %d", tt.limit, tt.shards, got, tt.want)
		}
	}
}

func TestSmallLimitEvictsAcrossTheTable(t *testing.T) {
	// With the default shard count, a small limit still finds an
	// unassured entry to drop.
	tb := newTbl(t, Config{Limit: 100})
	for i := range 1000 {
		r := tb.see(fmt.Sprintf("udp 198.18.0.1:%d > 198.18.0.2:53", 1000+i))
		if r.Reason == ReasonTableFull {
			t.Fatalf("connection %d refused with %d entries", i, tb.Len())
		}
	}
	if st := tb.Stats(); tb.Len() > 100 || st.Refused != 0 || st.Evicted != 900 {
		t.Errorf("Len %d stats %+v", tb.Len(), st)
	}
}
