// Command craft-sctp-gre writes the crafted captures that pin down the
// kernel's SCTP and GRE connection tracking (issue #15): the SCTP state
// machine over every chunk, its verification-tag checks, the chunks that
// may not start an association, the chunks that may not be bundled, and
// GRE's keys: none for version 0, the PPTP call id for version 1. No
// everyday tool sends most of these packets. The kernel's labels come from
// the oracle, live, in pkg/replay's TestConntrackLabelsEqualKernel, and are
// kept in internal/oracle/testdata/kernel-labels.
//
// Usage, from the repository root:
//
//	go run ./scripts/craft-sctp-gre -o testdata
//
// Every address is in 198.18.0.0/15 or fd00:198:18::/64. Each packet's
// note (in the .cmd file) says what it is and what the kernel makes of it.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

var (
	client4 = netip.MustParseAddr("198.18.0.1")
	server4 = netip.MustParseAddr("198.18.0.2")
	client6 = netip.MustParseAddr("fd00:198:18::1")
	server6 = netip.MustParseAddr("fd00:198:18::2")
)

// capture is one crafted file: its packets and what each is for.
type capture struct {
	name  string
	about string
	pkts  [][]byte // raw IP packets
	notes []string
}

func (c *capture) add(note string, pkt []byte) {
	c.pkts = append(c.pkts, pkt)
	c.notes = append(c.notes, note)
}

func main() {
	out := flag.String("o", "testdata", "directory to write NAME.pcap and NAME.pcap.cmd into")
	flag.Parse()
	for _, c := range []capture{sctpVtags(), sctpOOTB(), sctpBundling(), sctpV6(), greV0(), grePPTP()} {
		if err := write(*out, c); err != nil {
			fmt.Fprintln(os.Stderr, "craft-sctp-gre:", err)
			os.Exit(1)
		}
	}
}

// SCTP chunk types (RFC 9260 3.2).
const (
	cData             = 0
	cInit             = 1
	cInitAck          = 2
	cSack             = 3
	cHeartbeat        = 4
	cHeartbeatAck     = 5
	cAbort            = 6
	cShutdown         = 7
	cShutdownAck      = 8
	cError            = 9
	cCookieEcho       = 10
	cCookieAck        = 11
	cShutdownComplete = 14
	cForwardTSN       = 192

	flagT = 1 // ABORT and SHUTDOWN COMPLETE: the verification tag is reflected
)

// chunk is one SCTP chunk: type, flags, value; its length is 4 + the value
// unless length overrides it (a lie the packet tells).
type chunk struct {
	typ, flags uint8
	value      []byte
	length     int    // 0: 4 + len(value); -1: a length field of 0
	raw        []byte // instead of a chunk: these bytes as they are
}

func (c chunk) bytes() []byte {
	if c.raw != nil {
		return c.raw
	}
	n := 4 + len(c.value)
	l := n
	if c.length != 0 {
		l = c.length
	}
	if c.length < 0 { // a zero length field
		l = 0
	}
	b := make([]byte, 4, (n+3)&^3)
	b[0], b[1] = c.typ, c.flags
	binary.BigEndian.PutUint16(b[2:], uint16(l))
	b = append(b, c.value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// initChunk is an INIT or INIT ACK with an initiate tag (and, for INIT ACK,
// a state cookie parameter).
func initChunk(typ uint8, tag uint32) chunk {
	v := u32(tag)
	v = binary.BigEndian.AppendUint32(v, 65536)  // a_rwnd
	v = binary.BigEndian.AppendUint16(v, 10)     // outbound streams
	v = binary.BigEndian.AppendUint16(v, 10)     // inbound streams
	v = binary.BigEndian.AppendUint32(v, tag^42) // initial TSN
	if typ == cInitAck {
		v = append(v, 0, 7, 0, 12) // state cookie, 8 bytes
		v = append(v, []byte("cookie!!")...)
	}
	return chunk{typ: typ, value: v}
}

func data(tsn uint32, payload string) chunk {
	v := u32(tsn)
	v = append(v, 0, 0, 0, 0) // stream 0, sequence 0
	v = append(v, 0, 0, 0, 0) // payload protocol
	return chunk{typ: cData, flags: 3, value: append(v, payload...)}
}

func sack(cum uint32) chunk {
	v := u32(cum)
	v = binary.BigEndian.AppendUint32(v, 65536)
	return chunk{typ: cSack, value: append(v, 0, 0, 0, 0)}
}

func heartbeat(typ uint8) chunk {
	return chunk{typ: typ, value: []byte{0, 1, 0, 8, 'h', 'b', 'h', 'b'}}
}

func cookieEcho() chunk                     { return chunk{typ: cCookieEcho, value: []byte("cookie!!")} }
func bare(typ, flags uint8) chunk           { return chunk{typ: typ, flags: flags} }
func shutdown(cum uint32) chunk             { return chunk{typ: cShutdown, value: u32(cum)} }
func errorChunk() chunk                     { return chunk{typ: cError, value: []byte{0, 1, 0, 8, 0, 0, 0, 1}} } // invalid stream identifier
func unknown(typ uint8, value []byte) chunk { return chunk{typ: typ, value: value} }

// sctp is an SCTP packet: ports, verification tag, chunks, CRC32c right.
func sctp(src, dst netip.Addr, sport, dport uint16, vtag uint32, chunks ...chunk) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], vtag)
	for _, c := range chunks {
		b = append(b, c.bytes()...)
	}
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return ip(src, dst, 132, b)
}

// ip wraps body in an IPv4 or IPv6 header of protocol proto.
func ip(src, dst netip.Addr, proto uint8, body []byte) []byte {
	if src.Is6() {
		b := make([]byte, 40, 40+len(body))
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(len(body)))
		b[6], b[7] = proto, 64
		s, d := src.As16(), dst.As16()
		copy(b[8:], s[:])
		copy(b[24:], d[:])
		return append(b, body...)
	}
	b := make([]byte, 20, 20+len(body))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(body)))
	binary.BigEndian.PutUint16(b[4:], 1)
	b[6] = 0x40 // DF
	b[8], b[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return append(b, body...)
}

// assoc is one SCTP association's endpoints and tags, to write its
// packets briefly: c.o(...) from the client, c.r(...) from the server.
type assoc struct {
	cli, srv     netip.Addr
	cport, sport uint16
	ctag, stag   uint32 // the client's and the server's initiate tags
}

// o is a packet from the client with verification tag vtag.
func (a assoc) o(vtag uint32, cs ...chunk) []byte {
	return sctp(a.cli, a.srv, a.cport, a.sport, vtag, cs...)
}

// r is a packet from the server with verification tag vtag.
func (a assoc) r(vtag uint32, cs ...chunk) []byte {
	return sctp(a.srv, a.cli, a.sport, a.cport, vtag, cs...)
}

// handshake adds INIT, INIT ACK, COOKIE ECHO (with DATA bundled when
// bundle is set), COOKIE ACK.
func (a assoc) handshake(c *capture, what string, bundle bool) {
	c.add(what+": INIT, vtag 0, initiate tag "+hex(a.ctag), a.o(0, initChunk(cInit, a.ctag)))
	c.add(what+": INIT ACK, vtag "+hex(a.ctag)+", initiate tag "+hex(a.stag), a.r(a.ctag, initChunk(cInitAck, a.stag)))
	if bundle {
		c.add(what+": COOKIE ECHO bundled with DATA, vtag "+hex(a.stag), a.o(a.stag, cookieEcho(), data(1, "first")))
	} else {
		c.add(what+": COOKIE ECHO, vtag "+hex(a.stag), a.o(a.stag, cookieEcho()))
	}
	c.add(what+": COOKIE ACK, vtag "+hex(a.ctag)+": ESTABLISHED", a.r(a.ctag, bare(cCookieAck, 0)))
}

func hex(v uint32) string { return fmt.Sprintf("%#x", v) }

// sctpVtags: whole associations and the verification tags of every state.
func sctpVtags() capture {
	c := capture{name: "sctp-vtags", about: "SCTP associations over IPv4 through their states (INIT, INIT ACK, COOKIE ECHO, COOKIE ACK, DATA, HEARTBEAT, SHUTDOWN, SHUTDOWN ACK, SHUTDOWN COMPLETE, a restart, ABORT) with right and wrong verification tags"}

	a := assoc{cli: client4, srv: server4, cport: 5001, sport: 6001, ctag: 0x11111111, stag: 0x22222222}
	a.handshake(&c, "A", false)
	c.add("A: DATA, right vtag", a.o(a.stag, data(1, "hello")))
	c.add("A: SACK from the server, right vtag", a.r(a.ctag, sack(1)))
	c.add("A: DATA with a wrong vtag from the client: invalid", a.o(a.stag+1, data(2, "spoof")))
	c.add("A: DATA from the server with the client's vtag: invalid", a.r(a.stag, data(1, "spoof")))
	c.add("A: DATA from the server, right vtag", a.r(a.ctag, data(1, "reply")))
	c.add("A: HEARTBEAT, right vtag", a.o(a.stag, heartbeat(cHeartbeat)))
	c.add("A: HEARTBEAT ACK, right vtag", a.r(a.ctag, heartbeat(cHeartbeatAck)))
	c.add("A: HEARTBEAT with a new vtag (another path): accepted, vtag check failed noted, timer not refreshed", a.o(0x33333333, heartbeat(cHeartbeat)))
	c.add("A: HEARTBEAT ACK from the server with a new vtag: the tags of both directions are replaced", a.r(0x44444444, heartbeat(cHeartbeatAck)))
	c.add("A: DATA with the client's old vtag: its tag is now unknown (0): invalid", a.o(a.stag, data(2, "old tag")))
	c.add("A: HEARTBEAT with the client's vtag: learnt again", a.o(a.stag, heartbeat(cHeartbeat)))
	c.add("A: DATA, right vtag again", a.o(a.stag, data(2, "again")))
	c.add("A: DATA from the server with its new vtag", a.r(0x44444444, data(2, "new path")))
	c.add("A: DATA from the server with its old vtag: invalid", a.r(a.ctag, data(3, "old path")))
	c.add("A: SHUTDOWN: SHUTDOWN_SENT", a.o(a.stag, shutdown(2)))
	c.add("A: SHUTDOWN ACK from the server: SHUTDOWN_ACK_SENT", a.r(0x44444444, bare(cShutdownAck, 0)))
	c.add("A: SHUTDOWN COMPLETE with a wrong vtag: invalid", a.o(a.stag+1, bare(cShutdownComplete, 0)))
	c.add("A: SHUTDOWN COMPLETE, right vtag: CLOSED", a.o(a.stag, bare(cShutdownComplete, 0)))
	c.add("A: DATA after CLOSED, right vtag: no state change", a.o(a.stag, data(3, "late")))
	const ctag2, stag2 = 0x55555555, 0x66666666
	c.add("A: INIT again on the CLOSED association (restart): CLOSED, timer not refreshed", a.o(0, initChunk(cInit, ctag2)))
	c.add("A: INIT ACK, vtag the new initiate tag: COOKIE_WAIT", a.r(ctag2, initChunk(cInitAck, stag2)))
	c.add("A: COOKIE ECHO with the old vtag: invalid", a.o(a.stag, cookieEcho()))
	c.add("A: COOKIE ECHO, new vtag: COOKIE_ECHOED", a.o(stag2, cookieEcho()))
	c.add("A: COOKIE ACK with the old vtag: invalid", a.r(a.ctag, bare(cCookieAck, 0)))
	c.add("A: COOKIE ACK, new vtag: ESTABLISHED", a.r(ctag2, bare(cCookieAck, 0)))
	c.add("A: DATA, new vtag", a.o(stag2, data(1, "restarted")))

	b := assoc{cli: client4, srv: server4, cport: 5002, sport: 6002, ctag: 0x0a0a0a0a, stag: 0x0b0b0b0b}
	b.handshake(&c, "B", true)
	c.add("B: ABORT without T, the peer's vtag: invalid", b.o(b.ctag, bare(cAbort, 0)))
	c.add("B: ABORT with T, its own vtag: invalid", b.o(b.stag, bare(cAbort, flagT)))
	c.add("B: ABORT with T, the peer's vtag reflected: CLOSED", b.o(b.ctag, bare(cAbort, flagT)))
	c.add("B: DATA after the ABORT, right vtag", b.r(b.ctag, data(2, "late")))

	d := assoc{cli: client4, srv: server4, cport: 5003, sport: 6003, ctag: 0x0c0c0c0c, stag: 0x0d0d0d0d}
	d.handshake(&c, "C", false)
	c.add("C: SHUTDOWN from the server: SHUTDOWN_RECD", d.r(d.ctag, shutdown(0)))
	c.add("C: SHUTDOWN ACK from the client: SHUTDOWN_ACK_SENT", d.o(d.stag, bare(cShutdownAck, 0)))
	c.add("C: SHUTDOWN COMPLETE from the server with T, the client's vtag reflected: CLOSED", d.r(d.stag, bare(cShutdownComplete, flagT)))

	// INIT collision: both ends send INIT, then the INIT ACKs.
	e := assoc{cli: client4, srv: server4, cport: 5004, sport: 6004, ctag: 0x0e0e0e0e, stag: 0x0f0f0f0f}
	c.add("D: INIT from the client", e.o(0, initChunk(cInit, e.ctag)))
	c.add("D: INIT from the server (collision)", e.r(0, initChunk(cInit, e.stag)))
	c.add("D: INIT ACK from the client with another initiate tag: invalid", e.o(e.stag, initChunk(cInitAck, e.ctag+1)))
	c.add("D: INIT ACK from the client with its INIT's tag", e.o(e.stag, initChunk(cInitAck, e.ctag)))
	c.add("D: INIT ACK from the server with its INIT's tag: COOKIE_WAIT", e.r(e.ctag, initChunk(cInitAck, e.stag)))
	c.add("D: COOKIE ECHO from the client", e.o(e.stag, cookieEcho()))
	c.add("D: COOKIE ACK from the server: ESTABLISHED", e.r(e.ctag, bare(cCookieAck, 0)))

	// INIT ACK whose tag disagrees with what the INIT said.
	f := assoc{cli: client4, srv: server4, cport: 5005, sport: 6005, ctag: 0x01020304, stag: 0x05060708}
	c.add("E: INIT", f.o(0, initChunk(cInit, f.ctag)))
	c.add("E: INIT ACK with a vtag other than the INIT's tag: invalid", f.r(f.ctag+1, initChunk(cInitAck, f.stag)))
	c.add("E: INIT retransmitted: no refresh", f.o(0, initChunk(cInit, f.ctag)))
	c.add("E: INIT ACK, right vtag", f.r(f.ctag, initChunk(cInitAck, f.stag)))
	c.add("E: INIT ACK again with another initiate tag", f.r(f.ctag, initChunk(cInitAck, f.stag+1)))
	c.add("E: COOKIE ECHO with the first INIT ACK's tag: invalid", f.o(f.stag, cookieEcho()))
	c.add("E: COOKIE ECHO with the second INIT ACK's tag", f.o(f.stag+1, cookieEcho()))
	return c
}

// sctpOOTB: the first packet of an association that is not one, and the
// chunks that may start one.
func sctpOOTB() capture {
	c := capture{name: "sctp-ootb", about: "SCTP packets with no association: chunks that may not start one (ABORT, SHUTDOWN COMPLETE, COOKIE ACK, DATA, SACK, an unknown type, an INIT with a vtag), and those that may (COOKIE ECHO, SHUTDOWN ACK, HEARTBEAT, ERROR, SHUTDOWN, INIT ACK), with their answers"}
	p := uint16(7000)
	next := func() assoc {
		p++
		return assoc{cli: client4, srv: server4, cport: p, sport: p + 1000, ctag: 0x1000 + uint32(p), stag: 0x2000 + uint32(p)}
	}
	a := next()
	c.add("ABORT: invalid", a.o(0x1234, bare(cAbort, 0)))
	c.add("ABORT with T: invalid", a.o(0x1234, bare(cAbort, flagT)))
	c.add("SHUTDOWN COMPLETE: invalid", a.o(0x1234, bare(cShutdownComplete, 0)))
	c.add("COOKIE ACK: invalid", a.o(0x1234, bare(cCookieAck, 0)))
	c.add("DATA: invalid", a.o(0x1234, data(1, "ootb")))
	c.add("SACK: invalid", a.o(0x1234, sack(1)))
	c.add("FORWARD TSN (an unknown type to conntrack): invalid", a.o(0x1234, unknown(cForwardTSN, u32(1))))
	c.add("INIT with a non-zero vtag: invalid", a.o(0x1234, initChunk(cInit, a.ctag)))
	c.add("INIT whose chunk has no room for its header: invalid", a.o(0, chunk{typ: cInit}))
	c.add("HEARTBEAT bundled with DATA: invalid", a.o(0x1234, heartbeat(cHeartbeat), data(1, "x")))
	c.add("INIT, vtag 0: new", a.o(0, initChunk(cInit, a.ctag)))

	a = next()
	c.add("COOKIE ECHO with a vtag: invalid", a.o(0x1234, cookieEcho()))
	c.add("COOKIE ECHO with vtag 0: new", a.o(0, cookieEcho()))
	c.add("COOKIE ACK answering it, vtag 0", a.r(0, bare(cCookieAck, 0)))
	c.add("DATA, vtag 0", a.o(0, data(1, "x")))

	a = next()
	c.add("SHUTDOWN ACK: new, SHUTDOWN_ACK_SENT", a.o(0x4321, bare(cShutdownAck, 0)))
	c.add("SHUTDOWN COMPLETE with T answering it, the vtag reflected: invalid (the kernel expects 0 back)", a.r(0x4321, bare(cShutdownComplete, flagT)))
	c.add("SHUTDOWN COMPLETE without T, the same vtag", a.r(0x4321, bare(cShutdownComplete, 0)))

	a = next()
	c.add("SHUTDOWN ACK: new", a.o(0x4321, bare(cShutdownAck, 0)))
	c.add("SHUTDOWN COMPLETE with T and vtag 0", a.r(0, bare(cShutdownComplete, flagT)))

	a = next()
	c.add("HEARTBEAT: new, HEARTBEAT_SENT (a path of an association seen elsewhere)", a.o(0x5555, heartbeat(cHeartbeat)))
	c.add("HEARTBEAT again, same vtag", a.o(0x5555, heartbeat(cHeartbeat)))
	c.add("HEARTBEAT ACK answering it: ESTABLISHED", a.r(0x6666, heartbeat(cHeartbeatAck)))
	c.add("DATA with the HEARTBEAT's vtag", a.o(0x5555, data(1, "x")))
	c.add("DATA from the server with the HEARTBEAT ACK's vtag", a.r(0x6666, data(1, "y")))
	c.add("DATA from the server with another vtag: invalid", a.r(0x6667, data(2, "z")))

	a = next()
	c.add("HEARTBEAT: new", a.o(0x7777, heartbeat(cHeartbeat)))
	c.add("HEARTBEAT from the other side", a.r(0x8888, heartbeat(cHeartbeat)))
	c.add("HEARTBEAT ACK from the client", a.o(0x7777, heartbeat(cHeartbeatAck)))

	a = next()
	c.add("ERROR with a vtag: invalid", a.o(0x1234, errorChunk()))
	c.add("ERROR with vtag 0: new, CLOSED", a.o(0, errorChunk()))
	c.add("ABORT answering it with T, vtag 0", a.r(0, bare(cAbort, flagT)))

	a = next()
	c.add("SHUTDOWN with a vtag: invalid", a.o(0x1234, shutdown(1)))
	c.add("SHUTDOWN with vtag 0: new", a.o(0, shutdown(1)))

	a = next()
	c.add("INIT ACK with a vtag: invalid", a.o(0x1234, initChunk(cInitAck, a.ctag)))
	c.add("INIT ACK with vtag 0: new", a.o(0, initChunk(cInitAck, a.ctag)))
	c.add("COOKIE ECHO answering it with its initiate tag", a.r(a.ctag, cookieEcho()))

	a = next()
	c.add("INIT from the server side first (the kernel does not know who is the client): new", a.r(0, initChunk(cInit, a.stag)))
	c.add("INIT ACK from the client", a.o(a.stag, initChunk(cInitAck, a.ctag)))
	c.add("INIT from the client on the same ports: a reply-direction INIT in COOKIE_WAIT", a.o(0, initChunk(cInit, a.ctag)))
	return c
}

// sctpBundling: which chunks may share a packet, and chunk lengths.
func sctpBundling() capture {
	c := capture{name: "sctp-bundling", about: "SCTP chunks bundled where the kernel allows it and where it does not (COOKIE ECHO, COOKIE ACK not first; INIT, INIT ACK, SHUTDOWN COMPLETE not alone), chunk lengths of 0, 1-3 and beyond the packet, trailing bytes, no chunk at all"}
	a := assoc{cli: client4, srv: server4, cport: 8001, sport: 9001, ctag: 0x31313131, stag: 0x32323232}
	c.add("INIT bundled with DATA: invalid", a.o(0, initChunk(cInit, a.ctag), data(1, "x")))
	c.add("DATA then INIT: invalid", a.o(0, data(1, "x"), initChunk(cInit, a.ctag)))
	c.add("INIT", a.o(0, initChunk(cInit, a.ctag)))
	c.add("INIT ACK bundled with DATA: invalid", a.r(a.ctag, initChunk(cInitAck, a.stag), data(1, "x")))
	c.add("INIT ACK", a.r(a.ctag, initChunk(cInitAck, a.stag)))
	c.add("DATA then COOKIE ECHO: invalid", a.o(a.stag, data(1, "x"), cookieEcho()))
	c.add("COOKIE ECHO then DATA", a.o(a.stag, cookieEcho(), data(1, "x")))
	c.add("SACK then COOKIE ACK: invalid", a.r(a.ctag, sack(1), bare(cCookieAck, 0)))
	c.add("COOKIE ACK then SACK", a.r(a.ctag, bare(cCookieAck, 0), sack(1)))
	c.add("DATA and SACK", a.o(a.stag, data(2, "x"), sack(0)))
	c.add("DATA then SHUTDOWN COMPLETE: invalid", a.o(a.stag, data(3, "x"), bare(cShutdownComplete, 0)))
	c.add("SHUTDOWN COMPLETE then DATA: invalid", a.o(a.stag, bare(cShutdownComplete, 0), data(3, "x")))
	c.add("no chunk: invalid", a.o(a.stag))
	c.add("a chunk of length 0: invalid", a.o(a.stag, chunk{typ: cData, length: -1}))
	c.add("a DATA chunk of length 1", a.o(a.stag, chunk{typ: cData, length: 1}))
	c.add("a DATA chunk of length 3", a.o(a.stag, chunk{typ: cData, length: 3}))
	c.add("a DATA chunk longer than the packet", a.o(a.stag, chunk{typ: cData, flags: 3, value: make([]byte, 16), length: 400}))
	c.add("DATA then a chunk of length 0: invalid", a.o(a.stag, data(4, "x"), chunk{typ: cData, length: -1}))
	c.add("DATA, then 3 bytes", a.o(a.stag, data(5, "x"), chunk{raw: []byte{0, 0, 0}}))
	c.add("HEARTBEAT then DATA, with a wrong vtag: invalid (a HEARTBEAT's tag may change only alone)", a.o(a.stag+1, heartbeat(cHeartbeat), data(6, "x")))
	c.add("HEARTBEAT with a wrong vtag bundled with DATA: invalid", a.o(a.stag+1, data(6, "x"), heartbeat(cHeartbeat)))
	c.add("ABORT with a wrong vtag behind DATA: invalid", a.o(a.stag+2, data(7, "x"), bare(cAbort, 0)))
	c.add("DATA then ABORT, right vtag: CLOSED", a.o(a.stag, data(7, "x"), bare(cAbort, 0)))
	return c
}

// sctpV6: an association over IPv6.
func sctpV6() capture {
	c := capture{name: "sctp-ipv6", about: "an SCTP association over IPv6: handshake, DATA with right and wrong verification tags, SHUTDOWN"}
	a := assoc{cli: client6, srv: server6, cport: 5060, sport: 5061, ctag: 0xa1a1a1a1, stag: 0xb2b2b2b2}
	a.handshake(&c, "v6", false)
	c.add("v6: DATA", a.o(a.stag, data(1, "hello")))
	c.add("v6: SACK", a.r(a.ctag, sack(1)))
	c.add("v6: DATA with a wrong vtag: invalid", a.o(a.ctag, data(2, "spoof")))
	c.add("v6: SHUTDOWN", a.o(a.stag, shutdown(1)))
	c.add("v6: SHUTDOWN ACK", a.r(a.ctag, bare(cShutdownAck, 0)))
	c.add("v6: SHUTDOWN COMPLETE: CLOSED", a.o(a.stag, bare(cShutdownComplete, 0)))
	return c
}

// GRE.

// gre is a GRE packet: the flags-and-version word, the protocol type, then
// rest (the optional fields and the payload).
func gre(src, dst netip.Addr, flagsVer, proto uint16, rest []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, flagsVer)
	b = binary.BigEndian.AppendUint16(b, proto)
	return ip(src, dst, 47, append(b, rest...))
}

// pptp is an enhanced GRE (version 1) packet as PPTP sends it: key
// present (payload length, call id), a sequence number and a PPP frame
// carrying the IPv4 or IPv6 packet inner.
func pptp(src, dst netip.Addr, callID uint16, seq uint32, inner []byte) []byte {
	ppp := []byte{0xff, 0x03, 0x00, 0x21} // IPv4
	if inner[0]>>4 == 6 {
		ppp[3] = 0x57 // IPv6
	}
	ppp = append(ppp, inner...)
	rest := binary.BigEndian.AppendUint16(nil, uint16(len(ppp)))
	rest = binary.BigEndian.AppendUint16(rest, callID)
	rest = binary.BigEndian.AppendUint32(rest, seq)
	return gre(src, dst, 0x3001, 0x880b, append(rest, ppp...)) // K, S, version 1
}

// pptpAck is an enhanced GRE acknowledgement without payload.
func pptpAck(src, dst netip.Addr, callID uint16, ack uint32) []byte {
	rest := binary.BigEndian.AppendUint16(nil, 0)
	rest = binary.BigEndian.AppendUint16(rest, callID)
	rest = binary.BigEndian.AppendUint32(rest, ack)
	return gre(src, dst, 0x2081, 0x880b, rest) // K, A, version 1
}

// ping is an ICMP echo request or reply, the tunnelled traffic; ICMPv6
// between IPv6 addresses (typ 8 is then 128, 0 is 129).
func ping(src, dst netip.Addr, typ uint8, seq uint16) []byte {
	b := []byte{typ, 0, 0, 0, 0x12, 0x34, byte(seq >> 8), byte(seq)}
	var sum uint32
	proto := uint8(1)
	if src.Is6() {
		b[0], proto = 129-typ/8, 58
		s, d := src.As16(), dst.As16()
		for _, a := range [][]byte{s[:], d[:], {0, 0, 0, byte(len(b)), 0, 0, 0, 58}} {
			for i := 0; i < len(a); i += 2 {
				sum += uint32(binary.BigEndian.Uint16(a[i:]))
			}
		}
	}
	for i := 0; i < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return ip(src, dst, proto, b)
}

var (
	tunCli  = netip.MustParseAddr("198.18.10.1")
	tunSrv  = netip.MustParseAddr("198.18.10.2")
	tunCli6 = netip.MustParseAddr("fd00:198:18::a1")
	tunSrv6 = netip.MustParseAddr("fd00:198:18::a2")
)

// icmpError is an ICMP destination unreachable (port) quoting quote.
func icmpError(src, dst netip.Addr, quote []byte) []byte {
	b := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, quote...)
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		if i+1 == len(b) {
			sum += uint32(b[i]) << 8
			break
		}
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[2:], ^uint16(sum))
	return ip(src, dst, 1, b)
}

// opaque is a payload that is no IP packet.
var opaque = []byte("not an IP packet")

// greV0: plain GRE, whose tuple has no key.
func greV0() capture {
	c := capture{name: "gre-v0-keys", about: "plain GRE (version 0) over IPv4 and IPv6 with different keys in each direction, GRE of versions 2 and 7, and GRE headers shorter than 4 bytes"}
	inner := ping(tunCli, tunSrv, 8, 1)
	key := func(k uint32, payload []byte) []byte { return append(u32(k), payload...) }
	c.add("GRE v0, key 1, IPv4 inside: new", gre(client4, server4, 0x2000, 0x0800, key(1, inner)))
	c.add("GRE v0 back, key 2: established (the key is not in the tuple)", gre(server4, client4, 0x2000, 0x0800, key(2, ping(tunSrv, tunCli, 0, 1))))
	c.add("GRE v0, no key: established", gre(client4, server4, 0, 0x0800, inner))
	// GRE of other versions and enhanced GRE not carrying PPP carry no
	// IP packet here: pcaprewrite leaves such payloads alone (and so
	// would carry addresses from outside the test ranges).
	c.add("GRE version 2: the same tuple", gre(client4, server4, 0x0002, 0x0800, opaque))
	c.add("GRE version 7: the same tuple", gre(server4, client4, 0x0007, 0x0800, opaque))
	c.add("GRE of 2 bytes: the same tuple", ip(client4, server4, 47, []byte{0, 0}))
	c.add("GRE v0 over IPv6, key 7: new", gre(client6, server6, 0x2000, 0x86dd, key(7, nil)))
	c.add("GRE v0 over IPv6 back, key 8: established", gre(server6, client6, 0x2000, 0x86dd, key(8, nil)))
	c.add("GRE of 0 bytes over IPv6, another pair of addresses: new", ip(server6, netip.MustParseAddr("fd00:198:18::3"), 47, nil))
	return c
}

// grePPTP: enhanced GRE, keyed on the call id, with no PPTP helper to
// link the two directions.
func grePPTP() capture {
	c := capture{name: "gre-pptp-callid", about: "enhanced GRE (version 1, PPTP) over IPv4 and IPv6: each direction carries the peer's call id, so without a PPTP helper the two directions are two connections; call id 0, a header cut short, a protocol other than PPP"}
	in := ping(tunCli, tunSrv, 8, 1)
	back := ping(tunSrv, tunCli, 0, 1)
	c.add("v1 to the server, call id 0x4001: new", pptp(client4, server4, 0x4001, 1, in))
	c.add("v1 to the client, call id 0x8002: new (another tuple)", pptp(server4, client4, 0x8002, 1, back))
	c.add("v1 to the server again: new (never a reply)", pptp(client4, server4, 0x4001, 2, in))
	c.add("v1 acknowledgement to the client: new", pptpAck(server4, client4, 0x8002, 2))
	c.add("v1 to the server, call id 0x4003: new (a third tuple)", pptp(client4, server4, 0x4003, 1, in))
	c.add("v1 carrying IPv4 instead of PPP: invalid", gre(client4, server4, 0x2001, 0x0800, append([]byte{0, 0, 0x40, 0x01}, opaque...)))
	c.add("v1, call id 0: new", pptp(client4, server4, 0, 1, in))
	c.add("v1 back, call id 0: established", pptp(server4, client4, 0, 1, back))
	c.add("v0 back: established (the same tuple as call id 0)", gre(server4, client4, 0, 0x0800, back))
	c.add("v1 cut to 6 bytes (no call id): established, key 0", gre(client4, server4, 0x2001, 0x880b, []byte{0, 0}))
	c.add("v1 cut to 6 bytes with another protocol: established, key 0", gre(client4, server4, 0x2001, 0x0800, []byte{0, 0}))
	in6, back6 := ping(tunCli6, tunSrv6, 8, 1), ping(tunSrv6, tunCli6, 0, 1)
	c.add("v1 over IPv6, call id 0x0101: new", pptp(client6, server6, 0x0101, 1, in6))
	c.add("v1 over IPv6 back, call id 0x0202: new", pptp(server6, client6, 0x0202, 1, back6))
	c.add("v1 over IPv6 again: new", pptp(client6, server6, 0x0101, 2, in6))
	first := pptp(client4, server4, 0x4001, 3, in)
	c.add("ICMP unreachable from the server quoting the client's v1 packet, call id 0x4001: related", icmpError(server4, client4, first[:28]))
	c.add("ICMP unreachable quoting a v1 packet of call id 0x4002, unknown: invalid", icmpError(server4, client4, pptp(client4, server4, 0x4002, 3, in)[:28]))
	c.add("ICMP unreachable quoting a v1 packet carrying IPv4, not PPP: invalid", icmpError(server4, client4, gre(client4, server4, 0x2001, 0x0800, append([]byte{0, 0, 0x40, 0x01}, opaque...))[:28]))
	c.add("ICMP unreachable quoting the v0 packet (key 0): related", icmpError(client4, server4, gre(server4, client4, 0, 0x0800, back)[:28]))
	return c
}

func write(dir string, c capture) error {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return err
	}
	t0 := time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC)
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
	fmt.Fprintf(&cmd, "# Crafted (no everyday tool sends these), raw IP, one packet a millisecond:\n")
	fmt.Fprintf(&cmd, "go run ./scripts/craft-sctp-gre -o testdata\n")
	fmt.Fprintf(&cmd, "# The kernel labels them live in pkg/replay's TestConntrackLabelsEqualKernel;\n")
	fmt.Fprintf(&cmd, "# internal/oracle/testdata/kernel-labels/%s.jsonl keeps its answers.\n", c.name)
	for i, n := range c.notes {
		fmt.Fprintf(&cmd, "# #%d %s\n", i, n)
	}
	return os.WriteFile(path+".cmd", []byte(cmd.String()), 0o644)
}
