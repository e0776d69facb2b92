package packet

import (
	"fmt"
	"net/netip"
	"strings"
)

// String renders the packet on one line for logs and test failures, for
// example "ipv4 tcp 1.1.1.1:12345 > 2.2.2.2:80 S seq=1000 ack=0 win=8192
// len=0". It allocates; keep it off the hot path.
func (p *Packet) String() string {
	if p.IPVersion == 0 {
		return fmt.Sprintf("%v ethertype=%#04x len=%d", p.Kind, p.EtherType, len(p.Data))
	}
	var b strings.Builder
	if p.Kind != KindOK {
		fmt.Fprintf(&b, "%v ", p.Kind)
	}
	if p.VLANs > 0 {
		fmt.Fprintf(&b, "vlan %d ", p.VLANID)
	}
	fmt.Fprintf(&b, "ipv%d %s ", p.IPVersion, p.Proto)
	if p.L4Off != 0 && p.Kind == KindOK && (p.Proto == ProtoTCP || p.Proto == ProtoUDP || p.Proto == ProtoUDPLite || p.Proto == ProtoSCTP) {
		fmt.Fprintf(&b, "%s > %s", netip.AddrPortFrom(p.Src, p.SrcPort), netip.AddrPortFrom(p.Dst, p.DstPort))
	} else {
		fmt.Fprintf(&b, "%s > %s", p.Src, p.Dst)
	}
	switch {
	case p.Kind != KindOK || p.L4Off == 0:
	case p.Proto == ProtoTCP:
		fmt.Fprintf(&b, " %s seq=%d ack=%d win=%d", TCPFlagsString(p.TCPFlags), p.Seq, p.Ack, p.Window)
	case p.Proto == ProtoICMP && p.IPVersion == 4, p.Proto == ProtoICMPv6 && p.IPVersion == 6:
		fmt.Fprintf(&b, " type=%d code=%d", p.ICMPType, p.ICMPCode)
		if p.hasICMPID() {
			fmt.Fprintf(&b, " id=%d seq=%d", p.ICMPID, p.ICMPSeq)
		}
		if in := p.Inner; in.Valid {
			fmt.Fprintf(&b, " [%s %s:%d > %s:%d]", in.Proto, in.Src, in.SrcPort, in.Dst, in.DstPort)
		}
	}
	if p.Frag.IsFragment {
		fmt.Fprintf(&b, " frag id=%#x off=%d", p.Frag.ID, p.Frag.Offset)
		if p.Frag.More {
			b.WriteString("+")
		}
	}
	if p.PayloadOff != 0 {
		fmt.Fprintf(&b, " len=%d", p.PayloadLen)
	}
	return b.String()
}
