// Package nfqnl is what statewall's NFQUEUE reader (pkg/nfq) and the
// go-nfqueue reference readers it is measured against (pkg/nfq/nfqref)
// share: the kernel's nfnetlink_queue numbers, the messages both send
// (the copy mode, the shutdown gate, the drain probe, verdicts), the
// receive buffer set-up, and the defaults and batching bounds both apply,
// so that the readers compared differ only in how they read and answer.
//
// The numbers are the kernel's (include/uapi/linux/netlink.h and
// netfilter/nfnetlink_queue.h); nothing here runs on the hot path but
// AppendVerdictMsg, which allocates nothing once b has room.
package nfqnl

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
)

// Netlink and nfnetlink_queue numbers.
const (
	SubsysQueue = 3 // NFNL_SUBSYS_QUEUE: the high byte of a message type

	// Message types (the low byte).
	MsgPacket       = 0 // NFQNL_MSG_PACKET: a queued packet
	MsgVerdict      = 1 // NFQNL_MSG_VERDICT: the verdict for one packet
	MsgConfig       = 2 // NFQNL_MSG_CONFIG
	MsgVerdictBatch = 3 // NFQNL_MSG_VERDICT_BATCH: for every packet up to an id

	// MsgTypePacket is the full type of a queued packet's message.
	MsgTypePacket = SubsysQueue<<8 | MsgPacket

	// Attributes of NFQNL_MSG_CONFIG.
	CfgCmd         = 1 // NFQA_CFG_CMD
	CfgParams      = 2 // NFQA_CFG_PARAMS: copy mode and range
	CfgQueueMaxLen = 3 // NFQA_CFG_QUEUE_MAXLEN
	CfgMask        = 4 // NFQA_CFG_MASK
	CfgFlags       = 5 // NFQA_CFG_FLAGS
	CfgCmdBind     = 1 // NFQNL_CFG_CMD_BIND
	CopyNone       = 0 // NFQNL_COPY_NONE: the kernel queues nothing
	CopyPacket     = 2 // NFQNL_COPY_PACKET

	// Flags of NFQA_CFG_FLAGS.
	CfgFlagFailOpen = 1 << 0 // NFQA_CFG_F_FAIL_OPEN
	CfgFlagGSO      = 1 << 2 // NFQA_CFG_F_GSO

	// Attributes of NFQNL_MSG_PACKET, and the verdict header.
	AttrPacketHdr  = 1 // NFQA_PACKET_HDR
	AttrVerdictHdr = 2 // NFQA_VERDICT_HDR
	AttrMark       = 3
	AttrTimestamp  = 4
	AttrIfIndexIn  = 5
	AttrIfIndexOut = 6
	AttrPayload    = 10
	AttrCapLen     = 13
	AttrSkbInfo    = 14

	// Verdicts (NF_DROP, NF_ACCEPT).
	NfDrop   = 0
	NfAccept = 1

	NlaTypeMask    = 0x3fff // an attribute's type without NLA_F_NESTED and NLA_F_NET_BYTEORDER
	NlmsgHdrLen    = 16     // struct nlmsghdr
	NlmsgerrLen    = 4 + NlmsgHdrLen
	NlmFRequest    = 1
	NlmsgAlignment = 4
	// VerdictMsgLen is the length of a verdict message: nlmsghdr,
	// nfgenmsg, nlattr, nfqnl_msg_verdict_hdr.
	VerdictMsgLen = NlmsgHdrLen + 4 + 4 + 8

	afUnspec    = 0 // AF_UNSPEC
	nfnetlinkV0 = 0 // NFNETLINK_V0
)

// Defaults of nfq.QueueConfig, which the reference readers apply as well.
const (
	DefaultMaxLen       = 4096
	DefaultCopyRange    = 0xffff
	DefaultSockBuf      = 8 << 20
	DefaultDrainTimeout = 5 * time.Second
)

// Batching bounds, for nfq's reader and the go-nfqueue batch reference:
// verdicts wait for the socket to be empty, but at most MaxBatch of them
// (and at most half the queue length: the kernel counts undecided packets
// against it) and at most MaxBatchDelay after the first of them was
// decided (a slow Handler under a steady stream never sees an empty
// socket).
const (
	MaxBatch      = 64
	MaxBatchDelay = time.Millisecond
)

// BatchLimit is how many verdicts may wait on a queue of maxLen packets.
func BatchLimit(maxLen uint32) int {
	return max(1, min(MaxBatch, int(maxLen/2)))
}

// Align rounds a netlink length up to the alignment of the next message or
// attribute.
func Align(n int) int { return (n + NlmsgAlignment - 1) &^ (NlmsgAlignment - 1) }

// NfgenHeader is struct nfgenmsg: family, version, resource id (the queue,
// big endian).
func NfgenHeader(queue uint16) []byte {
	return []byte{afUnspec, nfnetlinkV0, byte(queue >> 8), byte(queue)}
}

// AppendAttr appends an attribute (struct nlattr, then data, padded).
func AppendAttr(b []byte, typ uint16, data ...byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%NlmsgAlignment != 0 {
		b = append(b, 0)
	}
	return b
}

// AppendAttrU32 appends an attribute holding a big-endian u32.
func AppendAttrU32(b []byte, typ uint16, v uint32) []byte {
	return AppendAttr(b, typ, binary.BigEndian.AppendUint32(nil, v)...)
}

// ConfigMsg is an NFQNL_MSG_CONFIG with one u32 attribute, without an
// acknowledgement request: success is silent, failure arrives as an error.
// ConfigMsg(q, CfgQueueMaxLen, 0) is the shutdown gate: the kernel queues
// nothing more.
func ConfigMsg(queue uint16, attr uint16, val uint32) netlink.Message {
	data := NfgenHeader(queue)
	data = binary.NativeEndian.AppendUint16(data, 8) // struct nlattr: length, type
	data = binary.NativeEndian.AppendUint16(data, attr)
	data = binary.BigEndian.AppendUint32(data, val)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(SubsysQueue<<8 | MsgConfig), Flags: netlink.Request},
		Data:   data,
	}
}

// ParamsMsg is an NFQNL_MSG_CONFIG setting the copy mode and range (struct
// nfqnl_msg_config_params: __be32 copy_range, __u8 copy_mode, packed),
// without an acknowledgement request.
func ParamsMsg(queue uint16, mode uint8, copyRange uint32) netlink.Message {
	data := NfgenHeader(queue)
	data = binary.NativeEndian.AppendUint16(data, 4+5)
	data = binary.NativeEndian.AppendUint16(data, CfgParams)
	data = binary.BigEndian.AppendUint32(data, copyRange)
	data = append(data, mode, 0, 0, 0) // and padding to 4 bytes
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(SubsysQueue<<8 | MsgConfig), Flags: netlink.Request},
		Data:   data,
	}
}

// ProbeMsg is an NFQNL_MSG_VERDICT accepting packet id, the drain probe:
// sent for an id no queued packet has, its refusal (ENOENT) comes back
// behind every packet queued before it.
func ProbeMsg(queue uint16, id uint32) netlink.Message {
	data := NfgenHeader(queue)
	data = binary.NativeEndian.AppendUint16(data, 12)
	data = binary.NativeEndian.AppendUint16(data, AttrVerdictHdr)
	data = binary.BigEndian.AppendUint32(data, NfAccept)
	data = binary.BigEndian.AppendUint32(data, id)
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(SubsysQueue<<8 | MsgVerdict), Flags: netlink.Request},
		Data:   data,
	}
}

// AppendVerdictMsg appends an NFQNL_MSG_VERDICT (typ MsgVerdict) or
// NFQNL_MSG_VERDICT_BATCH (MsgVerdictBatch) for id of the queue, verdict
// NfAccept or NfDrop, without an acknowledgement request: only a refusal
// is answered.
func AppendVerdictMsg(b []byte, queue uint16, typ uint16, seq uint32, verdict uint32, id uint32) []byte {
	b = binary.NativeEndian.AppendUint32(b, VerdictMsgLen)
	b = binary.NativeEndian.AppendUint16(b, SubsysQueue<<8|typ)
	b = binary.NativeEndian.AppendUint16(b, NlmFRequest)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)                        // to the kernel
	b = append(b, afUnspec, nfnetlinkV0, byte(queue>>8), byte(queue)) // nfgenmsg
	b = binary.NativeEndian.AppendUint16(b, 4+8)
	b = binary.NativeEndian.AppendUint16(b, AttrVerdictHdr)
	b = binary.BigEndian.AppendUint32(b, verdict)
	return binary.BigEndian.AppendUint32(b, id)
}

// VerdictMarkMsgLen is the length of a verdict message that sets the
// packet's mark: VerdictMsgLen and an NFQA_MARK attribute.
const VerdictMarkMsgLen = VerdictMsgLen + 8

// AppendVerdictMarkMsg is AppendVerdictMsg with an NFQA_MARK attribute:
// the kernel sets the packet's mark (for a batch verdict, every packet's
// it covers) to mark before it applies the verdict.
func AppendVerdictMarkMsg(b []byte, queue uint16, typ uint16, seq uint32, verdict uint32, id uint32, mark uint32) []byte {
	b = AppendVerdictMsg(b, queue, typ, seq, verdict, id)
	binary.NativeEndian.PutUint32(b[len(b)-VerdictMsgLen:], VerdictMarkMsgLen)
	b = binary.NativeEndian.AppendUint16(b, 4+4)
	b = binary.NativeEndian.AppendUint16(b, AttrMark)
	return binary.BigEndian.AppendUint32(b, mark)
}

// probeSeqs hands out sequence numbers for the messages whose answers a
// reader must recognize (the copy mode, the drain probe): top bit set, so
// never 0 ("none"). netlink.Conn numbers go-nfqueue's verdicts from a
// random start, so one may meet such a number, but it would also have to
// be refused with ENOENT while the probe is out to be taken for its
// answer; nfq's reader numbers its verdicts below 1<<31.
var probeSeqs atomic.Uint32

// NextSeq returns a sequence number with the top bit set.
func NextSeq() uint32 { return probeSeqs.Add(1) | 1<<31 }
