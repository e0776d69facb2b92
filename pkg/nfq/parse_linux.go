//go:build linux

package nfq

import (
	"encoding/binary"
	"time"
)

// Netlink and nfnetlink_queue numbers the raw reader needs beyond those in
// queue_linux.go (include/uapi/linux/netlink.h, netfilter/nfnetlink_queue.h).
const (
	nfqnlMsgPacket       = 0
	nfqnlMsgVerdictBatch = 3

	nfqaCfgCmd      = 1
	nfqaCfgMask     = 4
	nfqaCfgFlags    = 5
	nfqnlCfgCmdBind = 1

	nfqaPacketHdr   = 1
	nfqaMark        = 3
	nfqaTimestamp   = 4
	nfqaIfIndexIn   = 5
	nfqaIfIndexOut  = 6
	nfqaPayload     = 10
	nfqaCapLen      = 13
	nfqaSkbInfo     = 14
	nlaTypeMask     = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
	nlmsgHdrLen     = 16     // struct nlmsghdr
	nlmsgerrLen     = 4 + nlmsgHdrLen
	nlmFRequest     = 1
	verdictMsgLen   = nlmsgHdrLen + 4 + 4 + 8 // nlmsghdr, nfgenmsg, nlattr, nfqnl_msg_verdict_hdr
	nlmsgAlignment  = 4
	nfqnlMsgTypePkt = nfnlSubsysQueue<<8 | nfqnlMsgPacket
)

func nlAlign(n int) int { return (n + nlmsgAlignment - 1) &^ (nlmsgAlignment - 1) }

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
		switch binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask {
		case nfqaPacketHdr: // struct nfqnl_msg_packet_hdr: __be32 id, __be16 hw_protocol, __u8 hook
			if len(d) < 7 {
				ok = false
				break
			}
			p.ID = binary.BigEndian.Uint32(d)
			p.Hook = Hook(d[6])
			haveID = true
		case nfqaPayload:
			p.Payload = d
		case nfqaMark:
			ok = be32(d, &p.Mark) && ok
		case nfqaIfIndexIn:
			ok = be32(d, &p.InDev) && ok
		case nfqaIfIndexOut:
			ok = be32(d, &p.OutDev) && ok
		case nfqaCapLen:
			capLen = be32(d, &p.Length)
			ok = capLen && ok
		case nfqaSkbInfo:
			var f uint32
			ok = be32(d, &f) && ok
			p.Flags = PacketFlags(f)
		case nfqaTimestamp: // struct nfqnl_msg_packet_timestamp: __be64 sec, usec
			if len(d) < 16 {
				ok = false
				break
			}
			p.Timestamp = time.Unix(int64(binary.BigEndian.Uint64(d)), int64(binary.BigEndian.Uint64(d[8:]))*1000)
		}
		l = nlAlign(l)
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

// appendVerdictMsg appends an NFQNL_MSG_VERDICT (typ nfqnlMsgVerdict) or
// NFQNL_MSG_VERDICT_BATCH (nfqnlMsgVerdictBatch) for id of the queue,
// without an acknowledgement request: only a refusal is answered.
func appendVerdictMsg(b []byte, queue uint16, typ uint16, seq uint32, v Verdict, id uint32) []byte {
	nv := uint32(0) // NF_DROP
	if v == Accept {
		nv = 1 // NF_ACCEPT
	}
	b = binary.NativeEndian.AppendUint32(b, verdictMsgLen)
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysQueue<<8|typ)
	b = binary.NativeEndian.AppendUint16(b, nlmFRequest)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)       // to the kernel
	b = append(b, 0, 0, byte(queue>>8), byte(queue)) // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, queue
	b = binary.NativeEndian.AppendUint16(b, 4+8)
	b = binary.NativeEndian.AppendUint16(b, nfqaVerdictHdr)
	b = binary.BigEndian.AppendUint32(b, nv)
	return binary.BigEndian.AppendUint32(b, id)
}
