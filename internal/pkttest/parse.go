package pkttest

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/statewall/statewall/pkg/packet"
)

// Protocol numbers as plain bytes. packet.Packet's Proto field may become a
// named type; the numbers are converted from its constants, and setProto
// stores them whatever the field's type.
const (
	pICMP    = uint8(packet.ProtoICMP)
	pTCP     = uint8(packet.ProtoTCP)
	pUDP     = uint8(packet.ProtoUDP)
	pGRE     = uint8(packet.ProtoGRE)
	pICMPv6  = uint8(packet.ProtoICMPv6)
	pSCTP    = uint8(packet.ProtoSCTP)
	pUDPLite = uint8(packet.ProtoUDPLite)
)

// setProto stores the protocol number n in a Proto field of any type whose
// underlying type is uint8.
func setProto[T ~uint8](dst *T, n uint8) { *dst = T(n) }

// protoNames are the protocols with a name; proto=N writes any protocol.
var protoNames = map[string]uint8{
	"tcp": pTCP, "udp": pUDP, "udplite": pUDPLite, "sctp": pSCTP,
	"icmp": pICMP, "icmp6": pICMPv6, "gre": pGRE,
}

// spec is one parsed line. Numbers that a word may leave unset are -1
// when it did.
type spec struct {
	name     string // the protocol's name, for messages (proto=47: gre)
	proto    uint8
	src, dst netip.Addr
	ports    bool // the endpoints carry ports
	sport    uint16
	dport    uint16

	// TCP.
	flags    uint8
	seq, ack uint32 // seq: also the ICMP sequence number
	hasSeq   bool
	win      uint16
	wscale   int

	// Lengths.
	length int // len=
	l4len  int
	udplen int

	// ICMP.
	icmpType int
	icmpCode uint8
	id       uint16
	hasID    bool
	quote    *spec

	chunks [][2]int // SCTP: type, length

	// IP.
	ttl  uint8
	ipid uint32
	frag int
	mf   bool

	cut    int
	badsum bool
	nol4   bool

	seen map[string]bool // the words given, by key (flags for the flag word)
}

// parse reads a line and checks its words against each other; what only
// building it can find (a cut= beyond the packet) is checked then.
func parse(line string) (*spec, error) {
	s := &spec{win: 65535, wscale: -1, length: -1, l4len: -1, udplen: -1, icmpType: -1,
		ttl: 64, frag: -1, cut: -1, seen: map[string]bool{}}
	words, quote, err := split(line)
	if err != nil {
		return nil, err
	}
	if len(words) < 4 || words[2] != ">" {
		return nil, errors.New(`want "PROTO SRC > DST [WORD...]"`)
	}
	s.name = words[0]
	if n, ok := protoNames[s.name]; ok {
		s.proto = n
	} else if v, ok := strings.CutPrefix(s.name, "proto="); ok {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil {
			return nil, fmt.Errorf("%s: want a protocol number 0-255", s.name)
		}
		s.proto = uint8(n)
		for name, m := range protoNames {
			if s.proto == m {
				s.name = name // proto=47 is gre, with gre's words
			}
		}
	} else {
		return nil, fmt.Errorf("unknown protocol %q (want tcp, udp, udplite, sctp, icmp, icmp6, gre or proto=N)", s.name)
	}
	for _, w := range words[4:] {
		if err := s.word(w); err != nil {
			return nil, err
		}
	}
	s.ports = hasPorts(s.proto) && s.frag <= 0
	if s.src, s.sport, err = s.endpoint("source", words[1]); err != nil {
		return nil, err
	}
	if s.dst, s.dport, err = s.endpoint("destination", words[3]); err != nil {
		return nil, err
	}
	if s.src.Is4() != s.dst.Is4() {
		return nil, fmt.Errorf("source %s and destination %s are of different IP versions", s.src, s.dst)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	if quote != "" {
		q, err := parse(quote)
		if err != nil {
			return nil, fmt.Errorf("quoted packet: %w", err)
		}
		s.quote = q
		if err := s.checkQuote(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// split cuts a line into its words and the text of its quoted packet: a
// word after the first four that starts with "[" opens it, and the line's
// last "]" closes it.
func split(line string) (words []string, quote string, err error) {
	rest := strings.TrimSpace(line)
	for rest != "" {
		if len(words) >= 4 && rest[0] == '[' {
			if !strings.HasSuffix(rest, "]") {
				return nil, "", errors.New(`the quoted packet "[" has no closing "]" at the end of the line`)
			}
			quote = strings.TrimSpace(rest[1 : len(rest)-1])
			if quote == "" {
				return nil, "", errors.New("empty quoted packet []")
			}
			return words, quote, nil
		}
		i := strings.IndexAny(rest, " \t")
		if i < 0 {
			i = len(rest)
		}
		words = append(words, rest[:i])
		rest = strings.TrimSpace(rest[i:])
	}
	return words, "", nil
}

func hasPorts(proto uint8) bool {
	return proto == pTCP || proto == pUDP || proto == pUDPLite || proto == pSCTP
}

func isICMP(proto uint8) bool { return proto == pICMP || proto == pICMPv6 }

// word reads one word after the destination.
func (s *spec) word(w string) error {
	k, v, isOpt := strings.Cut(w, "=")
	if !isOpt {
		k = w
		switch w {
		case "mf", "badsum", "nol4":
		default:
			if s.proto != pTCP {
				return fmt.Errorf("unknown word %q", w)
			}
			k = "flags"
		}
	}
	if s.seen[k] && k != "chunk" {
		return fmt.Errorf("%s given twice", k)
	}
	s.seen[k] = true
	// only says which protocols a word is for.
	only := func(what string, ok bool) error {
		if !ok {
			return fmt.Errorf("%s: only for %s, not %s", w, what, s.name)
		}
		return nil
	}
	num := func(bits int) (uint64, error) {
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return 0, fmt.Errorf("%s: want a number of at most %d bits", w, bits)
		}
		return n, nil
	}
	var n uint64
	var err error
	switch k {
	case "flags":
		return s.tcpFlags(w)
	case "mf":
		s.mf = true
	case "badsum":
		s.badsum = true
	case "nol4":
		s.nol4 = true
	case "seq":
		if err = only("tcp and icmp queries", s.proto == pTCP || isICMP(s.proto)); err == nil {
			n, err = num(32)
			s.seq, s.hasSeq = uint32(n), true
			if err == nil && s.proto != pTCP && n > 0xffff {
				err = fmt.Errorf("%s: an ICMP sequence number has 16 bits", w)
			}
		}
	case "ack":
		if err = only("tcp", s.proto == pTCP); err == nil {
			n, err = num(32)
			s.ack = uint32(n)
		}
	case "win":
		if err = only("tcp", s.proto == pTCP); err == nil {
			n, err = num(16)
			s.win = uint16(n)
		}
	case "wscale":
		if err = only("tcp", s.proto == pTCP); err == nil {
			n, err = num(8)
			s.wscale = int(n)
		}
	case "len":
		n, err = num(16)
		s.length = int(n)
	case "l4len":
		n, err = num(16)
		s.l4len = int(n)
	case "udplen":
		if err = only("udp and udplite", s.proto == pUDP || s.proto == pUDPLite); err == nil {
			n, err = num(16)
			s.udplen = int(n)
		}
	case "type":
		if err = only("icmp and icmp6", isICMP(s.proto)); err == nil {
			n, err = num(8)
			s.icmpType = int(n)
		}
	case "code":
		if err = only("icmp and icmp6", isICMP(s.proto)); err == nil {
			n, err = num(8)
			s.icmpCode = uint8(n)
		}
	case "id":
		if err = only("icmp and icmp6", isICMP(s.proto)); err == nil {
			n, err = num(16)
			s.id, s.hasID = uint16(n), true
		}
	case "chunk":
		if err = only("sctp", s.proto == pSCTP); err == nil {
			t, l, ok := strings.Cut(v, ":")
			typ, err1 := strconv.ParseUint(t, 10, 8)
			n, err2 := strconv.ParseUint(l, 10, 16)
			if !ok || err1 != nil || err2 != nil {
				return fmt.Errorf("%s: want chunk=TYPE:LENGTH", w)
			}
			s.chunks = append(s.chunks, [2]int{int(typ), int(n)})
		}
	case "ttl":
		n, err = num(8)
		s.ttl = uint8(n)
	case "ipid":
		n, err = num(32)
		s.ipid = uint32(n)
	case "frag":
		n, err = num(16)
		if err == nil && (n%8 != 0 || n > 0xfff8) {
			err = fmt.Errorf("%s: a fragment offset is a multiple of 8 up to 65528", w)
		}
		s.frag = int(n)
	case "cut":
		n, err = num(16)
		s.cut = int(n)
	default:
		return fmt.Errorf("unknown word %q", w)
	}
	return err
}

func (s *spec) tcpFlags(w string) error {
	for _, c := range w {
		var f uint8
		switch c {
		case 'F':
			f = packet.TCPFin
		case 'S':
			f = packet.TCPSyn
		case 'R':
			f = packet.TCPRst
		case 'P':
			f = packet.TCPPsh
		case 'A':
			f = packet.TCPAck
		case 'U':
			f = packet.TCPUrg
		case 'E':
			f = packet.TCPEce
		case 'W':
			f = packet.TCPCwr
		default:
			return fmt.Errorf("unknown word %q (TCP flags are F S R P A U E W)", w)
		}
		if s.flags&f != 0 {
			return fmt.Errorf("TCP flags %q: %c twice", w, c)
		}
		s.flags |= f
	}
	return nil
}

// endpoint reads the source or the destination.
func (s *spec) endpoint(which, w string) (netip.Addr, uint16, error) {
	var a netip.Addr
	var port uint16
	if s.ports {
		ap, err := netip.ParseAddrPort(w)
		if err != nil {
			why := "want ADDRESS:PORT, [IPv6]:PORT for IPv6"
			if s.frag > 0 {
				why = "a non-first fragment has no ports"
			}
			return a, 0, fmt.Errorf("%s %q: %s has ports: %s", which, w, s.name, why)
		}
		a, port = ap.Addr(), ap.Port()
	} else {
		var err error
		if a, err = netip.ParseAddr(w); err != nil {
			why := s.name + " has no ports"
			if hasPorts(s.proto) {
				why = "a non-first fragment (frag=N, N > 0) has no ports"
			}
			return a, 0, fmt.Errorf("%s %q: want an address: %s", which, w, why)
		}
	}
	if a.Zone() != "" {
		return a, 0, fmt.Errorf("%s %q: an address with a zone", which, w)
	}
	return a, port, nil
}

// check checks the words against each other.
func (s *spec) check() error {
	switch {
	case s.length >= 0 && s.l4len >= 0:
		return errors.New("len= and l4len= both given: l4len= counts the header too")
	case len(s.chunks) > 0 && (s.length >= 0 || s.l4len >= 0):
		return errors.New("chunk= with len= or l4len=: the chunks make the payload")
	case isICMP(s.proto) && s.icmpType < 0:
		return fmt.Errorf("%s needs type=N", s.name)
	case s.frag > 0 && s.l4len >= 0:
		return errors.New("l4len= on a non-first fragment, which has no transport header: len= gives its data")
	case s.frag > 0 && (s.nol4 || s.flags != 0 || s.wscale >= 0 || s.badsum || len(s.chunks) > 0 || s.udplen >= 0 ||
		s.hasSeq || s.hasID || s.seen["ack"] || s.seen["win"] || s.seen["type"] || s.seen["code"]):
		return errors.New("a non-first fragment (frag=N, N > 0) has no transport header: no flags or transport words")
	case s.src.Is6() && s.frag < 0 && !s.mf && s.ipid != 0:
		return errors.New("ipid= on IPv6 is the fragment header's: give frag= or mf too")
	case s.src.Is4() && s.ipid > 0xffff:
		return errors.New("ipid=: an IPv4 identification has 16 bits")
	case s.badsum && !hasChecksum(s.proto):
		return fmt.Errorf("badsum: %s has no checksum here", s.name)
	}
	if isICMP(s.proto) {
		if (s.hasID || s.hasSeq) && !icmpHasID(s.proto, uint8(s.icmpType)) {
			return fmt.Errorf("id=/seq= on %s type %d, which has no identifier", s.name, s.icmpType)
		}
	}
	if s.mf && s.frag < 0 {
		s.frag = 0
	}
	return nil
}

// checkQuote checks a quoted packet against the error quoting it.
func (s *spec) checkQuote() error {
	q := s.quote
	switch {
	case !isICMP(s.proto) || !icmpIsError(s.proto, uint8(s.icmpType)):
		return fmt.Errorf("a quoted packet needs an ICMP error (icmp type 3, 4, 5, 11, 12; icmp6 type 1-4), not %s type %d", s.name, s.icmpType)
	case s.length >= 0 || s.l4len >= 0:
		return errors.New("len= or l4len= with a quoted packet: the quote is the payload")
	case q.src.Is4() != s.src.Is4():
		return errors.New("the quoted packet is of another IP version than the error")
	case q.nol4:
		return errors.New("quoted packet: nol4 describes fields, a quote is bytes")
	}
	return nil
}

func hasChecksum(proto uint8) bool {
	return proto == pTCP || proto == pUDP || proto == pUDPLite || proto == pSCTP || isICMP(proto)
}

// icmpHasID reports whether an ICMP message of this type has an identifier
// and a sequence number where Decode reads them (packet's hasICMPID).
func icmpHasID(proto, typ uint8) bool {
	if proto == pICMP {
		switch typ {
		case 0, 8, 13, 14, 15, 16, 17, 18:
			return true
		}
		return false
	}
	switch typ {
	case 128, 129, 139, 140:
		return true
	}
	return false
}

// icmpIsError reports whether an ICMP message of this type quotes the
// packet that caused it (packet's isICMPError).
func icmpIsError(proto, typ uint8) bool {
	if proto == pICMP {
		switch typ {
		case 3, 4, 5, 11, 12:
			return true
		}
		return false
	}
	return typ >= 1 && typ <= 4
}
