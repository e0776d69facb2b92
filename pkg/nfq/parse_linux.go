//go:build linux

package nfq

import (
	"encoding/binary"
	"time"

	"github.com/statewall/statewall/pkg/nfq/internal/nfqnl"
)

// parsePacket fills p (which the caller has zeroed but for Queue) from the
// body of an NFQNL_MSG_PACKET message: struct nfgenmsg, then attributes.
// Payload points into b. haveID says whether the packet header, and so the
// id a verdict needs, was found; ok is false if anything was malformed.
// Attributes the Packet has no field for are skipped.
func parsePacket(p *Packet, b []byte) (haveID, ok bool) {
	if len(b) < 4 {
		return false, false
	}
	b = b[4:]
	ok = true
	capLen := false
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			ok = false
			break
		}
		d := b[4:l]
		switch binary.NativeEndian.Uint16(b[2:]) & nfqnl.NlaTypeMask {
		case nfqnl.AttrPacketHdr: // struct nfqnl_msg_packet_hdr: __be32 id, __be16 hw_protocol, __u8 hook
			if len(d) < 7 {
				ok = false
				break
			}
			p.ID = binary.BigEndian.Uint32(d)
			p.Hook = Hook(d[6])
			haveID = true
		case nfqnl.AttrPayload:
			p.Payload = d
		case nfqnl.AttrMark:
			ok = be32(d, &p.Mark) && ok
		case nfqnl.AttrIfIndexIn:
			ok = be32(d, &p.InDev) && ok
		case nfqnl.AttrIfIndexOut:
			ok = be32(d, &p.OutDev) && ok
		case nfqnl.AttrCapLen:
			capLen = be32(d, &p.Length)
			ok = capLen && ok
		case nfqnl.AttrSkbInfo:
			var f uint32
			ok = be32(d, &f) && ok
			p.Flags = PacketFlags(f)
		case nfqnl.AttrTimestamp: // struct nfqnl_msg_packet_timestamp: __be64 sec, usec
			if len(d) < 16 {
				ok = false
				break
			}
			p.Timestamp = time.Unix(int64(binary.BigEndian.Uint64(d)), int64(binary.BigEndian.Uint64(d[8:]))*1000)
		}
		l = nfqnl.Align(l)
		if l >= len(b) {
			break
		}
		b = b[l:]
	}
	if !capLen {
		p.Length = uint32(len(p.Payload))
	}
	return haveID, ok
}

func be32(d []byte, v *uint32) bool {
	if len(d) < 4 {
		return false
	}
	*v = binary.BigEndian.Uint32(d)
	return true
}
