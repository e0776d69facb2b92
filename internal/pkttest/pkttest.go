// Package pkttest builds the packets of tests from one line of text in
// tcpdump's spirit, either as decoded fields (Fields: a packet.Packet with
// no bytes) or as the bytes of an IP packet (Bytes) that decode to the same
// fields, so that the tests of conntrack, the engines and the rules write
// their packets in one notation. TestFieldsAgreeWithDecode holds the two
// forms to each other, and gopacket checks the bytes.
//
// A line is a protocol, a source, ">", a destination, then words in any
// order:
//
//	tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000 win=8192 wscale=7
//	tcp [2001:db8::1]:40000 > [2001:db8::2]:80 PA seq=1001 ack=5001 len=100
//	udp 198.18.0.1:5353 > 198.18.0.2:53 len=30
//	udplite 198.18.0.1:5000 > 198.18.0.2:6000 len=20 udplen=12
//	sctp 198.18.0.1:2906 > 198.18.0.2:6303 chunk=1:20
//	icmp 198.18.0.1 > 198.18.0.2 type=8 id=7 seq=1 len=56
//	icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53]
//	icmp6 2001:db8::1 > 2001:db8::2 type=128 id=7
//	gre 198.18.0.1 > 198.18.0.2
//	proto=33 198.18.0.1 > 198.18.0.2
//	udp 198.18.0.1 > 198.18.0.2 frag=1480 len=100
//
// Protocols: tcp, udp, udplite and sctp, which have ports; icmp, icmp6 and
// gre; proto=N for any protocol number (proto=47 is gre). Endpoints: an address, with :port when the protocol has
// ports, an IPv6 address then in brackets ([2001:db8::1]:53); source and
// destination of one IP version.
//
// Words, each at most once:
//
//	FSRPAUEW  TCP flags, tcpdump's letters in any order ("SA", "FA", "SEW");
//	          no such word: no flags at all
//	seq=N     TCP sequence number; the sequence number of an ICMP query
//	          (echo and the other types with an identifier)
//	ack=N     TCP acknowledgement number
//	win=N     TCP window, 65535 unless given
//	wscale=N  a TCP window-scale option (after a NOP: a 24-byte header)
//	len=N     payload bytes after the transport header (zeros), 0 unless given
//	l4len=N   instead of len=: the transport bytes, header included, that
//	          the IP header announces; may be shorter than the header
//	udplen=N  the UDP length field (UDP-Lite: the checksum coverage, 0 for
//	          all), the transport bytes unless given
//	type=N    ICMP type, required for icmp and icmp6
//	code=N    ICMP code
//	id=N      ICMP identifier, for the types that have one
//	chunk=T:L instead of len=: an SCTP chunk of type T and length L (padded
//	          to 4 bytes); repeatable, in order
//	ttl=N     TTL or hop limit, 64 unless given
//	ipid=N    IPv4 identification; IPv6: the fragment header's
//	frag=N    fragment offset in bytes, a multiple of 8. With N > 0 there is
//	          no transport header, so the endpoints have no ports and len=
//	          is the fragment's data. IPv6 gets a fragment header (frag=0
//	          alone is an atomic fragment). IPv4 packets have DF set unless
//	          frag= or mf is given.
//	mf        more fragments follow (mf alone: frag=0 mf, a first fragment)
//	[LINE]    last on the line, for ICMP errors: the quoted packet, all its
//	          bytes (cut= in LINE quotes only that many, as routers quote
//	          the IP header and 8 bytes); of the error's IP version
//
// Lengths follow from the words: IP total length, UDP length and the
// transport lengths are consistent unless a word says otherwise. Checksums
// are right as conntrack checks them: over the transport bytes the IP
// header announces, which for a UDP length field shorter than that
// (udplen=) is not the sum a UDP stack computes.
//
// Two words are for one form only. cut=N keeps the first N bytes (a packet
// truncated inside a header) and badsum writes a wrong transport checksum
// (SCTP: CRC32c): Bytes only, since Fields has no bytes to cut or to check.
// nol4 marks the transport header as not decoded (L4Off 0) while the other
// fields stay as written, a shape no bytes decode to: Fields only.
//
// Fields sets every field that Decode with packet.LinkIP sets from Bytes,
// except Data, which is nil; L4ChecksumOK therefore reports true. A few
// lines describe what the decoder would not produce, for tests of code that
// must cope with such fields anyway: a transport length shorter than its
// header (udp ... l4len=6), a UDP length field beyond the IP payload, ICMP
// over the other IP version. Fields builds them as written; their bytes
// decode as malformed, or without ICMP fields; TestDecoderDisagrees says
// how for each.
package pkttest

import (
	"fmt"
	"testing"

	"github.com/statewall/statewall/pkg/packet"
)

// Fields returns the decoded packet line describes, without bytes: what
// Decode with packet.LinkIP makes of Bytes(line), Data left nil.
func Fields(line string) (*packet.Packet, error) {
	s, err := parse(line)
	if err == nil {
		var p *packet.Packet
		if p, err = s.fields(); err == nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("pkttest: %q: %w", line, err)
}

// Bytes returns the IP packet line describes, starting at the IP header
// (as NFQUEUE hands packets over: packet.LinkIP), with lengths and
// checksums correct unless a word of the line says otherwise.
func Bytes(line string) ([]byte, error) {
	s, err := parse(line)
	if err == nil {
		var b []byte
		if b, err = s.bytes(); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("pkttest: %q: %w", line, err)
}

// Decode returns Bytes(line) decoded with packet.LinkIP: a packet with real
// bytes in Data, as a firewall receives it. Its Kind is not KindOK when the
// bytes do not decode (cut=, for one).
func Decode(line string) (*packet.Packet, error) {
	b, err := Bytes(line)
	if err != nil {
		return nil, err
	}
	p := new(packet.Packet)
	p.Decode(b, packet.LinkIP)
	return p, nil
}

// MustFields is Fields that fails tb on a bad line.
func MustFields(tb testing.TB, line string) *packet.Packet {
	tb.Helper()
	p, err := Fields(line)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// MustBytes is Bytes that fails tb on a bad line.
func MustBytes(tb testing.TB, line string) []byte {
	tb.Helper()
	b, err := Bytes(line)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// MustDecode is Decode that fails tb on a bad line.
func MustDecode(tb testing.TB, line string) *packet.Packet {
	tb.Helper()
	p, err := Decode(line)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
