// Command craft-parity writes the crafted captures that pin down where
// conntrack's labels must equal the kernel's on packets no everyday tool
// sends (issue #15): a tuple equal to its own reverse, IPv6 "no next
// header", ICMPv6 error types other than 1-4, ICMP errors quoting only the
// inner ports, or an inner IPv4 header with a wrong version. The kernel's
// labels for them come from the oracle, live, in pkg/replay's
// TestConntrackLabelsEqualKernel, like every capture in testdata/.
//
// Usage, from the repository root:
//
//	go run ./scripts/craft-parity -o testdata
//
// Every address is in 198.18.0.0/15 or fd00:198:18::/64.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var (
	client4 = net.ParseIP("198.18.0.1").To4()
	server4 = net.ParseIP("198.18.0.2").To4()
	client6 = net.ParseIP("fd00:198:18::1")
	server6 = net.ParseIP("fd00:198:18::2")
	router6 = net.ParseIP("fd00:198:18::fe")
)

// capture is one crafted file: its packets and what each is for.
type capture struct {
	name  string
	about string
	pkts  [][]byte // raw IP packets
	notes []string
}

func main() {
	out := flag.String("o", "testdata", "directory to write NAME.pcap and NAME.pcap.cmd into")
	flag.Parse()
	for _, c := range captures() {
		if err := write(*out, c); err != nil {
			fmt.Fprintln(os.Stderr, "craft-parity:", err)
			os.Exit(1)
		}
	}
}

func captures() []capture {
	var cs []capture

	// A tuple equal to its own reverse.
	self := capture{name: "parity-self-tuple", about: "tuples equal to their own reverse: a UDP socket sending to its own address and port, and a LAND SYN (198.18.0.1:5000 to itself), then a SYN/ACK and an ACK on the same tuple"}
	self.add("UDP to itself", udp4(client4, client4, 5000, 5000, "one"))
	self.add("UDP to itself again", udp4(client4, client4, 5000, 5000, "two"))
	self.add("LAND SYN", tcp4(client4, client4, 6000, 6000, 1000, 0, layers.TCP{SYN: true}))
	self.add("SYN/ACK on the same tuple", tcp4(client4, client4, 6000, 6000, 1000, 1001, layers.TCP{SYN: true, ACK: true}))
	self.add("ACK on the same tuple", tcp4(client4, client4, 6000, 6000, 1001, 1001, layers.TCP{ACK: true}))
	cs = append(cs, self)

	// IPv6 with no next header (59), bare and after a destination
	// options header.
	nonext := capture{name: "parity-ipv6-no-next-header", about: "IPv6 packets whose next header is 59 (no next header), bare and behind a destination options header, each sent twice"}
	nonext.add("no next header", ipv6Raw(client6, server6, 59, nil))
	nonext.add("no next header again", ipv6Raw(client6, server6, 59, nil))
	destOpts := []byte{59, 0, 1, 4, 0, 0, 0, 0} // next header 59, length 0 (8 bytes), PadN
	nonext.add("destination options, then no next header", ipv6Raw(client6, server6, 60, destOpts))
	nonext.add("the same again", ipv6Raw(client6, server6, 60, destOpts))
	cs = append(cs, nonext)

	// ICMPv6 errors of every type below 128 (the kernel's errors), each
	// quoting a UDP flow that exists; and a Redirect whose Redirected
	// Header option quotes the flow.
	e6 := capture{name: "parity-icmpv6-error-types", about: "a UDP flow over IPv6, then ICMPv6 messages of types 0, 1, 5, 100 and 127 from the server quoting the client's datagram, and a Redirect from a router whose Redirected Header quotes it"}
	query := udp6(client6, server6, 40100, 53, "query")
	e6.add("UDP query", query)
	for _, typ := range []uint8{0, 1, 5, 100, 127} {
		e6.add(fmt.Sprintf("ICMPv6 type %d quoting the query", typ), icmp6(server6, client6, typ, 0, make([]byte, 4), query))
	}
	e6.add("Redirect quoting the query in a Redirected Header", icmp6(router6, client6, 137, 0, redirectBody(query), nil))
	cs = append(cs, e6)

	// ICMP errors whose quote holds only 4 bytes of the inner UDP header
	// (its ports), and one whose inner IPv4 header has the wrong version.
	q4 := capture{name: "parity-icmp-short-quote", about: "a UDP flow over IPv4, then port-unreachable errors from the server quoting the client's datagram with only the 4 bytes of ports, with all 8 bytes, and with the quoted IPv4 header's version nibble set to 5"}
	dgram := udp4(client4, server4, 40200, 53, "query")
	q4.add("UDP query", dgram)
	q4.add("port unreachable quoting IPv4 header + 4 bytes", icmp4(server4, client4, 3, 3, dgram[:24]))
	q4.add("port unreachable quoting IPv4 header + 8 bytes", icmp4(server4, client4, 3, 3, dgram[:28]))
	badVersion := bytes.Clone(dgram[:28])
	badVersion[0] = 0x55
	q4.add("port unreachable quoting a header with version 5", icmp4(server4, client4, 3, 3, badVersion))
	cs = append(cs, q4)

	// IPv6 oddities of the header chain: a destination options header
	// that runs past the packet. (Two atomic fragment headers are in
	// pkg/packet's TestIPv6ChainsAsTheKernelWalksThem only: the kernel's
	// defragmentation queues them without their fragment headers, which
	// the oracle cannot compare with what it injected.)
	odd := capture{name: "parity-ipv6-odd-chains", about: "IPv6 header chains the kernel's parser takes its own way: a destination options header longer than the packet before UDP (invalid: no ports to read) and before GRE (tracked by addresses)"}
	odd.add("destination options longer than the packet", ipv6Raw(client6, server6, 60, []byte{17, 2, 1, 4, 0, 0, 0, 0}))
	odd.add("GRE behind destination options longer than the packet", ipv6Raw(client6, server6, 60, []byte{47, 3, 1, 4, 0, 0, 0, 0, 0, 0, 0x88, 0x0b}))
	cs = append(cs, odd)
	return cs
}

func (c *capture) add(note string, pkt []byte) {
	c.pkts = append(c.pkts, pkt)
	c.notes = append(c.notes, note)
}

func write(dir string, c capture) error {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return err
	}
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i, p := range c.pkts {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(p), Length: len(p)}
		if err := w.WritePacket(ci, p); err != nil {
			return err
		}
	}
	path := filepath.Join(dir, c.name+".pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	var cmd strings.Builder
	fmt.Fprintf(&cmd, "# testdata/%s.pcap — %s\n", c.name, c.about)
	fmt.Fprintf(&cmd, "# Crafted (no tool sends these), raw IP, one packet a millisecond:\n")
	fmt.Fprintf(&cmd, "go run ./scripts/craft-parity -o testdata\n")
	fmt.Fprintf(&cmd, "# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel.\n")
	for i, n := range c.notes {
		fmt.Fprintf(&cmd, "# #%d %s\n", i, n)
	}
	return os.WriteFile(path+".cmd", []byte(cmd.String()), 0o644)
}

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return bytes.Clone(buf.Bytes())
}

func ip4(src, dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst, Id: 1}
}

func ip6(src, dst net.IP, nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh, SrcIP: src, DstIP: dst}
}

func udp4(src, dst net.IP, sport, dport uint16, payload string) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(ip, u, gopacket.Payload(payload))
}

func udp6(src, dst net.IP, sport, dport uint16, payload string) []byte {
	ip := ip6(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return serialize(ip, u, gopacket.Payload(payload))
}

func tcp4(src, dst net.IP, sport, dport uint16, seq, ack uint32, flags layers.TCP) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	t := flags
	t.SrcPort, t.DstPort, t.Seq, t.Ack, t.Window = layers.TCPPort(sport), layers.TCPPort(dport), seq, ack, 64240
	t.SetNetworkLayerForChecksum(ip)
	return serialize(ip, &t)
}

// ipv6Raw is an IPv6 header with next header nh and then body.
func ipv6Raw(src, dst net.IP, nh uint8, body []byte) []byte {
	b := make([]byte, 40+len(body))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(body)))
	b[6], b[7] = nh, 64
	copy(b[8:], src)
	copy(b[24:], dst)
	copy(b[40:], body)
	return b
}

// icmp4 is an ICMP message of type and code with a zero rest-of-header
// and quote as its body.
func icmp4(src, dst net.IP, typ, code uint8, quote []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return serialize(ip, ic, gopacket.Payload(quote))
}

// icmp6 is an ICMPv6 message: type, code, the 4 bytes after the checksum,
// then quote.
func icmp6(src, dst net.IP, typ, code uint8, rest, quote []byte) []byte {
	body := make([]byte, 4, 4+len(rest)+len(quote))
	body[0], body[1] = typ, code
	body = append(append(body, rest...), quote...)
	// The checksum over the pseudo-header.
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src)
	add(dst)
	var l [8]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(body)))
	l[7] = 58
	add(l[:])
	add(body)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(body[2:], ^uint16(sum))
	return ipv6Raw(src, dst, 58, body)
}

// redirectBody is a Redirect's body after the 4 reserved bytes: target and
// destination (the server: a better first hop is the server itself), then
// a Redirected Header option (type 4) carrying quote.
func redirectBody(quote []byte) []byte {
	b := make([]byte, 4, 4+32+8+len(quote)+8)
	b = append(b, server6...)
	b = append(b, server6...)
	opt := make([]byte, 8, 8+len(quote)+8)
	opt = append(opt, quote...)
	for len(opt)%8 != 0 {
		opt = append(opt, 0)
	}
	opt[0], opt[1] = 4, byte(len(opt)/8)
	return append(b, opt...)
}
