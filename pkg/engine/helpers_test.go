package engine_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// pkt builds a packet from a line in tcpdump's spirit and decodes it, as
// NFQUEUE would hand it over (raw IP). The bytes come from gopacket's
// encoder, with lengths and checksums computed, so conntrack's checksum
// check sees real packets.
//
//	tcp 198.18.0.1:40000 > 198.18.0.2:80 S [seq=N] [ack=N] [win=N] [len=N]
//	tcp ... none                  (no flags at all)
//	udp 198.18.0.2:5353 > 192.0.2.53:53 [len=N]
//	icmp 198.18.0.1 > 198.18.0.2 type=8 [code=N] [id=N] [seq=N]
//	icmp 192.0.2.1 > 198.18.0.2 type=3 code=4 [tcp 198.18.0.2:40001 > 203.0.113.5:443 S seq=7]
//	icmp6 fd00::1 > fd00::2 type=128 id=1
//	tcp [fd00::1]:40000 > [fd00::2]:80 S
//
// Flags are tcpdump's letters F S R P A U E W. cut=N keeps only the first N
// bytes, to make a truncated packet.
func pkt(t testing.TB, line string) *packet.Packet {
	t.Helper()
	b, err := build(line)
	if err != nil {
		t.Fatalf("pkt(%q): %v", line, err)
	}
	p := new(packet.Packet)
	p.Decode(b, packet.LinkIP)
	return p
}

// build returns the bytes of the packet the line describes.
func build(line string) ([]byte, error) {
	var inner []byte
	if i := strings.IndexByte(line, '['); i >= 0 && strings.HasSuffix(line, "]") && strings.Contains(line[i:], " > ") {
		b, err := build(line[i+1 : len(line)-1])
		if err != nil {
			return nil, fmt.Errorf("quoted packet: %v", err)
		}
		line, inner = strings.TrimSpace(line[:i]), b
	}
	f := strings.Fields(line)
	if len(f) < 4 || f[2] != ">" {
		return nil, fmt.Errorf(`want "proto src > dst ..."`)
	}
	proto := f[0]
	ports := proto == "tcp" || proto == "udp"
	src, sport, err := endpoint(f[1], ports)
	if err != nil {
		return nil, err
	}
	dst, dport, err := endpoint(f[3], ports)
	if err != nil {
		return nil, err
	}
	opt := map[string]int{}
	flags := ""
	for _, kv := range f[4:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			flags = kv
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", kv, err)
		}
		opt[k] = int(n)
	}

	var nl gopacket.NetworkLayer
	var ls []gopacket.SerializableLayer
	ipProto := map[string]layers.IPProtocol{"tcp": layers.IPProtocolTCP, "udp": layers.IPProtocolUDP,
		"icmp": layers.IPProtocolICMPv4, "icmp6": layers.IPProtocolICMPv6}[proto]
	if ipProto == 0 {
		return nil, fmt.Errorf("unknown protocol %q", proto)
	}
	ttl := uint8(64)
	if v, ok := opt["ttl"]; ok {
		ttl = uint8(v)
	}
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: ttl, Id: uint16(opt["ipid"]), Flags: layers.IPv4DontFragment,
			Protocol: ipProto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		nl, ls = ip, append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: ipProto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		nl, ls = ip, append(ls, ip)
	}
	payload := gopacket.Payload(make([]byte, opt["len"]))
	switch proto {
	case "tcp":
		if flags == "none" {
			flags = ""
		}
		if strings.Trim(flags, "FSRPAUEW") != "" {
			return nil, fmt.Errorf("bad TCP flags %q", flags)
		}
		win := 64240
		if v, ok := opt["win"]; ok {
			win = v
		}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport),
			Seq: uint32(opt["seq"]), Ack: uint32(opt["ack"]), Window: uint16(win),
			FIN: strings.Contains(flags, "F"), SYN: strings.Contains(flags, "S"), RST: strings.Contains(flags, "R"),
			PSH: strings.Contains(flags, "P"), ACK: strings.Contains(flags, "A"), URG: strings.Contains(flags, "U"),
			ECE: strings.Contains(flags, "E"), CWR: strings.Contains(flags, "W")}
		if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		ls = append(ls, tcp, payload)
	case "udp":
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		if err := udp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		ls = append(ls, udp, payload)
	case "icmp":
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(uint8(opt["type"]), uint8(opt["code"])),
			Id: uint16(opt["id"]), Seq: uint16(opt["seq"])})
		if inner != nil {
			ls = append(ls, gopacket.Payload(inner))
		} else {
			ls = append(ls, payload)
		}
	case "icmp6":
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(uint8(opt["type"]), uint8(opt["code"]))}
		if err := icmp.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		// Echo: identifier and sequence; errors: 4 unused bytes; both
		// then carry the body.
		body := []byte{byte(opt["id"] >> 8), byte(opt["id"]), byte(opt["seq"] >> 8), byte(opt["seq"])}
		if inner != nil {
			body = append(body[:4:4], inner...)
		}
		ls = append(ls, icmp, gopacket.Payload(body))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	b := append([]byte(nil), buf.Bytes()...)
	if n, ok := opt["cut"]; ok && n < len(b) {
		b = b[:n]
	}
	return b, nil
}

func endpoint(s string, withPort bool) (netip.Addr, uint16, error) {
	if !withPort {
		a, err := netip.ParseAddr(s)
		return a, 0, err
	}
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr(), ap.Port(), err
}

// ruleset parses rules text; "@name" loads rules/name from the repository.
func ruleset(t testing.TB, src string) *rules.Ruleset {
	t.Helper()
	name, text := "test.rules", []byte(src)
	if file, ok := strings.CutPrefix(src, "@"); ok {
		name = "../../rules/" + file
		var err error
		if text, err = os.ReadFile(name); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := rules.Parse(name, text)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// ruleSource is the text of a ruleset as written (for "@name", the file).
func ruleSource(t testing.TB, src string) string {
	t.Helper()
	if file, ok := strings.CutPrefix(src, "@"); ok {
		b, err := os.ReadFile("../../rules/" + file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	return src
}

// expandRule replaces "{TEXT}" in a wanted reason by the reason of the rule
// written on the line of src that starts with TEXT: "rule N (line L)",
// where L is that line and N counts the rule lines up to it, plus the
// rule's label. The numbers come from the rule text, not from the engine.
func expandRule(t testing.TB, rs *rules.Ruleset, src, want string) string {
	t.Helper()
	i := strings.IndexByte(want, '{')
	if i < 0 {
		return want
	}
	j := strings.IndexByte(want[i:], '}')
	if j < 0 {
		t.Fatalf("unterminated {rule} in %q", want)
	}
	prefix := want[i+1 : i+j]
	n, found := 0, ""
	for l, line := range strings.Split(src, "\n") {
		w := strings.Fields(line)
		if len(w) == 0 || w[0] != "pass" && w[0] != "block" {
			continue
		}
		n++
		if strings.HasPrefix(line, prefix) {
			if found != "" {
				t.Fatalf("{%s} names more than one rule", prefix)
			}
			found = "rule " + strconv.Itoa(n) + " (line " + strconv.Itoa(l+1) + ")"
			if lab := rs.Rules[n-1].Label; lab != "" {
				found += " " + strconv.Quote(lab)
			}
		}
	}
	if found == "" {
		t.Fatalf("{%s} names no rule", prefix)
	}
	return want[:i] + found + want[i+j+1:]
}

// dirOf tells in from out by `set local`, as replay does.
func dirOf(rs *rules.Ruleset, p *packet.Packet) rules.Dir { return rs.Direction(p.Src, p.Dst) }

// newTable is the table a ruleset asks for, as replay and the daemon make
// it.
func newTable(rs *rules.Ruleset) *conntrack.Table {
	return conntrack.New(conntrack.Config{Timeouts: rs.Timeouts, Limit: rs.LimitStates})
}

// verdict renders a decision the way a report shows it.
func verdict(d engine.Decision) string { return d.Verdict.String() + " " + d.Reason() }
