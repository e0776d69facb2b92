package pcaprewrite

import (
	"encoding/binary"
	"fmt"
)

// Link types (pcap LINKTYPE_* values) this package decodes.
const (
	LinkNull     uint32 = 0   // BSD loopback: 4-byte host-order address family
	LinkEthernet uint32 = 1   // Ethernet II / 802.3, any number of 802.1Q/802.1ad tags
	LinkRaw12    uint32 = 12  // DLT_RAW as some systems write it
	LinkRaw14    uint32 = 14  // DLT_RAW as some systems write it
	LinkRaw      uint32 = 101 // raw IP
	LinkLoop     uint32 = 108 // OpenBSD loopback: network-order family
	LinkSLL      uint32 = 113 // Linux cooked v1
	LinkIPv4     uint32 = 228 // raw IPv4
	LinkIPv6     uint32 = 229 // raw IPv6
	LinkSLL2     uint32 = 276 // Linux cooked v2
)

// etherTypeName names the EtherTypes that show up as skip reasons.
func etherTypeName(et uint16) string {
	switch et {
	case 0x0806:
		return "ARP"
	case 0x8035:
		return "RARP"
	case 0x8847, 0x8848:
		return "MPLS"
	case 0x9000:
		return "Ethernet loopback (CTP)"
	case 0x88cc:
		return "LLDP"
	case 0x8863:
		return "PPPoE discovery"
	case 0x888e:
		return "EAPOL"
	case 0x88f7:
		return "PTP"
	case 0x8809:
		return "slow protocols (LACP)"
	}
	return "unknown"
}

// ethernetToIP strips an Ethernet header and any 802.1Q/802.1ad/QinQ tags
// (and a PPPoE session header or an LLC/SNAP header carrying IP). It returns
// the IP packet, or nil and the reason the frame carries no IP.
func ethernetToIP(f []byte) ([]byte, string) {
	if len(f) < 14 {
		return nil, "truncated Ethernet header"
	}
	et := binary.BigEndian.Uint16(f[12:])
	o := 14
	for et == 0x8100 || et == 0x88a8 || et == 0x9100 || et == 0x9200 {
		if o+4 > len(f) {
			return nil, "truncated VLAN tag"
		}
		et = binary.BigEndian.Uint16(f[o+2:])
		o += 4
	}
	return etherPayload(et, f[o:])
}

// etherPayload interprets b according to EtherType (or 802.3 length) et.
func etherPayload(et uint16, b []byte) ([]byte, string) {
	switch {
	case et == 0x0800 || et == 0x86dd:
		return b, ""
	case et < 0x0600: // 802.3 length field: LLC follows
		if len(b) >= 8 && b[0] == 0xaa && b[1] == 0xaa && b[2] == 0x03 && b[3] == 0 && b[4] == 0 && b[5] == 0 {
			et2 := binary.BigEndian.Uint16(b[6:])
			if et2 == 0x0800 || et2 == 0x86dd {
				return b[8:], ""
			}
			return nil, fmt.Sprintf("not IP: LLC/SNAP EtherType 0x%04x", et2)
		}
		if len(b) >= 3 && b[0] == 0xfe && b[1] == 0xfe {
			return nil, "not IP: 802.3/LLC frame (OSI, e.g. IS-IS)"
		}
		if len(b) >= 3 && b[0] == 0x42 && b[1] == 0x42 {
			return nil, "not IP: 802.3/LLC frame (STP)"
		}
		return nil, "not IP: 802.3/LLC frame"
	case et == 0x8864: // PPPoE session
		if len(b) < 8 {
			return nil, "truncated PPPoE header"
		}
		switch binary.BigEndian.Uint16(b[6:]) {
		case 0x0021:
			return b[8:], ""
		case 0x0057:
			return b[8:], ""
		}
		return nil, "not IP: PPPoE session frame without IP"
	}
	return nil, fmt.Sprintf("not IP: EtherType 0x%04x (%s)", et, etherTypeName(et))
}

// linkToIP strips the link layer of a frame of the given link type.
func linkToIP(lt uint32, f []byte) ([]byte, string) {
	switch lt {
	case LinkEthernet:
		return ethernetToIP(f)
	case LinkRaw, LinkRaw12, LinkRaw14, LinkIPv4, LinkIPv6:
		return f, ""
	case LinkNull, LinkLoop:
		if len(f) < 4 {
			return nil, "truncated loopback header"
		}
		fam := binary.LittleEndian.Uint32(f)
		if lt == LinkLoop || fam > 0xffff {
			fam = binary.BigEndian.Uint32(f)
		}
		switch fam {
		case 2, 24, 28, 30: // AF_INET; AF_INET6 on NetBSD/OpenBSD, FreeBSD, Darwin
			return f[4:], ""
		}
		return nil, fmt.Sprintf("not IP: loopback address family %d", fam)
	case LinkSLL:
		if len(f) < 16 {
			return nil, "truncated Linux cooked header"
		}
		return sllPayload(binary.BigEndian.Uint16(f[14:]), f[16:])
	case LinkSLL2:
		if len(f) < 20 {
			return nil, "truncated Linux cooked v2 header"
		}
		return sllPayload(binary.BigEndian.Uint16(f[0:]), f[20:])
	}
	return nil, fmt.Sprintf("unsupported link type %d", lt)
}

func sllPayload(proto uint16, b []byte) ([]byte, string) {
	for proto == 0x8100 || proto == 0x88a8 {
		if len(b) < 4 {
			return nil, "truncated VLAN tag"
		}
		proto, b = binary.BigEndian.Uint16(b[2:]), b[4:]
	}
	if proto < 0x0600 {
		return nil, fmt.Sprintf("not IP: Linux cooked protocol 0x%04x", proto)
	}
	return etherPayload(proto, b)
}
