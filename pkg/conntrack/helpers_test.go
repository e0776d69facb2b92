package conntrack

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// pkt builds a decoded packet from a line in tcpdump's spirit:
//
//	udp 198.18.0.1:5353 > 198.18.0.2:53 [len=N] [udplen=N] [l4len=N]
//	tcp 198.18.0.1:40000 > 198.18.0.2:80 S [seq=N] [ack=N] [win=N] [len=N] [wscale=N]
//	icmp 198.18.0.1 > 198.18.0.2 type=8 [code=N] [id=N] [seq=N]
//	icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53]
//	icmp6 2001:db8::1 > 2001:db8::2 type=128 id=7
//	gre 198.18.0.1 > 198.18.0.2        (or proto=N for any protocol)
//
// IPv6 endpoints with ports are written [2001:db8::1]:53. Lengths are
// filled in consistently unless given. The packet has no bytes (Data is
// nil), so L4ChecksumOK reports true: tests of bad checksums use wire().
func pkt(s string) *packet.Packet {
	p, err := parsePkt(s)
	if err != nil {
		panic(fmt.Sprintf("pkt(%q): %v", s, err))
	}
	return p
}

func parsePkt(s string) (*packet.Packet, error) {
	var inner string
	if i := strings.IndexByte(s, '['); i >= 0 && strings.HasSuffix(s, "]") && !strings.HasPrefix(s[i:], "[2") && strings.Contains(s[i:], " > ") {
		s, inner = strings.TrimSpace(s[:i]), s[i+1:len(s)-1]
	}
	f := strings.Fields(s)
	if len(f) < 4 || f[2] != ">" {
		return nil, fmt.Errorf("want \"proto src > dst ...\"")
	}
	p := &packet.Packet{Kind: packet.KindOK}
	switch name := f[0]; {
	case name == "tcp":
		p.Proto = packet.ProtoTCP
	case name == "udp":
		p.Proto = packet.ProtoUDP
	case name == "udplite":
		p.Proto = packet.ProtoUDPLite
	case name == "icmp":
		p.Proto = packet.ProtoICMP
	case name == "icmp6":
		p.Proto = packet.ProtoICMPv6
	case name == "gre":
		p.Proto = packet.ProtoGRE
	case strings.HasPrefix(name, "proto="):
		n, err := strconv.Atoi(name[len("proto="):])
		if err != nil {
			return nil, err
		}
		p.Proto = uint8(n)
	default:
		return nil, fmt.Errorf("unknown protocol %q", name)
	}
	ports := hasPorts(p.Proto)
	src, sport, err := endpoint(f[1], ports)
	if err != nil {
		return nil, err
	}
	dst, dport, err := endpoint(f[3], ports)
	if err != nil {
		return nil, err
	}
	p.Src, p.Dst, p.SrcPort, p.DstPort = src, dst, sport, dport
	p.IPVersion = 4
	p.IPHdrLen = 20
	if src.Is6() {
		p.IPVersion, p.IPHdrLen = 6, 40
	}
	hdr := 8
	if p.Proto == packet.ProtoTCP {
		hdr, p.TCPHdrLen, p.Window = 20, 20, 65535
	}
	payload, udplen, l4len := 0, -1, -1
	for _, kv := range f[4:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			if p.Proto != packet.ProtoTCP {
				return nil, fmt.Errorf("bad option %q", kv)
			}
			fl, err := tcpFlags(kv)
			if err != nil {
				return nil, err
			}
			p.TCPFlags = fl
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", kv, err)
		}
		switch k {
		case "seq":
			p.Seq = uint32(n)
			p.ICMPSeq = uint16(n)
		case "ack":
			p.Ack = uint32(n)
		case "win":
			p.Window = uint16(n)
		case "wscale":
			p.TCPOpts.WScale, p.TCPOpts.HasWScale = uint8(n), true
		case "len":
			payload = int(n)
		case "udplen":
			udplen = int(n)
		case "l4len":
			l4len = int(n)
		case "type":
			p.ICMPType = uint8(n)
		case "code":
			p.ICMPCode = uint8(n)
		case "id":
			p.ICMPID = uint16(n)
		default:
			return nil, fmt.Errorf("unknown option %q", k)
		}
	}
	if l4len < 0 {
		l4len = hdr + payload
	}
	p.L4Len, p.PayloadLen = l4len, max(l4len-hdr, 0)
	if p.Proto == packet.ProtoUDP || p.Proto == packet.ProtoUDPLite {
		if udplen < 0 {
			udplen = l4len
		}
		p.UDPLen = uint16(udplen)
	}
	p.IPLen = p.IPHdrLen + l4len
	if inner != "" {
		q, err := parsePkt(inner)
		if err != nil {
			return nil, fmt.Errorf("quoted packet: %v", err)
		}
		p.Inner = packet.Inner{Valid: true, IPVersion: q.IPVersion, Proto: q.Proto, Src: q.Src, Dst: q.Dst,
			SrcPort: q.SrcPort, DstPort: q.DstPort, ICMPType: q.ICMPType, ICMPCode: q.ICMPCode,
			ICMPID: q.ICMPID, TCPSeq: q.Seq}
	}
	return p, nil
}

func endpoint(s string, ports bool) (netip.Addr, uint16, error) {
	if ports {
		ap, err := netip.ParseAddrPort(s)
		return ap.Addr(), ap.Port(), err
	}
	a, err := netip.ParseAddr(s)
	return a, 0, err
}

func tcpFlags(s string) (uint8, error) {
	var f uint8
	for _, c := range s {
		switch c {
		case 'F':
			f |= packet.TCPFin
		case 'S':
			f |= packet.TCPSyn
		case 'R':
			f |= packet.TCPRst
		case 'P':
			f |= packet.TCPPsh
		case 'A', '.':
			f |= packet.TCPAck
		case 'U':
			f |= packet.TCPUrg
		case 'E':
			f |= packet.TCPEce
		case 'W':
			f |= packet.TCPCwr
		default:
			return 0, fmt.Errorf("unknown TCP flag %q", c)
		}
	}
	return f, nil
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
