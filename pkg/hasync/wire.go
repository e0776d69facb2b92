package hasync

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
)

// Wire format, version 1. A session is a stream of frames over TLS; every
// integer is little-endian, as in the conntrack state file whose records
// RECORDS carries.
//
//	header  20 bytes
//	  0  magic     "SWSY"
//	  4  version   uint8 (1)
//	  5  type      uint8 (below)
//	  6  flags     uint8: bit 0 ack requested (RECORDS, DELETE, BULK_END),
//	               bit 1 bulk (RECORDS sent between BULK_START and BULK_END);
//	               any other bit, or a bit on another type, is an error
//	  7  reserved  uint8 (0)
//	  8  length    uint32: body bytes after the header, at most MaxFrame-20
//	 12  seq       uint64: 1 for the first frame a side sends in a session,
//	               then exactly one more per frame
//	body, by type
//	  1 HELLO       0 version uint8: the highest the sender speaks (1)
//	                1 name length uint8 (1..255)
//	                2 reserved [6]byte (0)
//	                8 table limit uint64: the sender's conntrack limit, 0 if not said
//	               16 session id [16]byte: random, new for every session
//	               32 node name
//	  2 RECORDS     0 count uint32 (1..MaxRecords)
//	                4 count × conntrack.Record (140 bytes each: snapshot.go's record,
//	                  time left relative to the sender's clock when it sent)
//	  3 DELETE      0 count uint32 (1..MaxDeletes)
//	                4 count × key (38 bytes each: a Record's first 38 bytes, the
//	                  original tuple, because a deleted entry has no record left)
//	  4 ACK         0 seq uint64: the receiver has applied every frame up to and
//	                  including this one of the sender's; acks are cumulative and
//	                  strictly increasing
//	  5 BULK_START  0 count uint64: how many records the sender expects to send
//	                  (the table's size when it started: an estimate)
//	  6 BULK_END    0 count uint64: how many records the bulk carried (exact; the
//	                  receiver checks it against the bulk frames it got)
//	  7 KEEPALIVE   empty
//
// The ack id is the frame's seq: a frame that asks for an ack is acked as
// a whole once every record in it is installed, so a deferred record
// (Announce) is acked by the ack of the frame that carried it, and one
// ack per frame, not per record, measures the sync lag (doc.go). On a
// stream a frame arrives whole or not at all, so a per-record id would
// add 8 bytes a record and say nothing more.
//
// Errors. A frame that breaks any rule above cuts the session off: a bad
// magic, reserved byte, flag, unknown type or body shape is garbage; a
// length over the limit is oversized (nothing of it is read); a seq that
// is not one more than the last is replayed (or garbage for a gap); a
// header version other than 1, or a HELLO that speaks a later version, is
// refused as version, logged saying which version the peer speaks.
const (
	// Version is the protocol version this package speaks.
	Version = 1
	// MaxFrame is the largest frame, header included: 64 KiB, a bound on
	// what one frame from a peer can make this node hold.
	MaxFrame = 64 << 10
	// MaxRecords is the most records one RECORDS frame holds.
	MaxRecords = (MaxFrame - headerSize - 4) / conntrack.RecordSize
	// MaxDeletes is the most keys one DELETE frame holds.
	MaxDeletes = (MaxFrame - headerSize - 4) / keySize

	magic      = "SWSY"
	headerSize = 20
	keySize    = 38
	maxBody    = MaxFrame - headerSize
	helloFixed = 32
)

// Frame types.
const (
	typeHello     uint8 = 1
	typeRecords   uint8 = 2
	typeDelete    uint8 = 3
	typeAck       uint8 = 4
	typeBulkStart uint8 = 5
	typeBulkEnd   uint8 = 6
	typeKeepalive uint8 = 7
	numTypes            = 8
)

// Frame flags.
const (
	flagAck  uint8 = 1 << 0
	flagBulk uint8 = 1 << 1
)

var typeNames = [numTypes]string{"", "HELLO", "RECORDS", "DELETE", "ACK", "BULK_START", "BULK_END", "KEEPALIVE"}

// allowedFlags are the flags each type may carry.
var allowedFlags = [numTypes]uint8{
	typeRecords: flagAck | flagBulk,
	typeDelete:  flagAck,
	typeBulkEnd: flagAck,
}

func typeName(t uint8) string {
	if t < numTypes && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("type %d", t)
}

// ProtocolError is a peer's breach of the protocol (or of this node's
// rules for peers): why a connection was refused or a session cut off.
type ProtocolError struct {
	Reason Reason
	Msg    string
}

func (e *ProtocolError) Error() string { return e.Reason.String() + ": " + e.Msg }

// Is makes errors.Is(err, ErrProtocol) true for every ProtocolError.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

// ErrProtocol is matched (errors.Is) by every ProtocolError.
var ErrProtocol = errors.New("sync protocol error")

func protoErr(r Reason, format string, args ...any) error {
	return &ProtocolError{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// The decoder's fixed errors, made once: a garbage frame costs no
// allocation to refuse.
var (
	errShort     = &ProtocolError{ReasonGarbage, "truncated frame"}
	errMagic     = &ProtocolError{ReasonGarbage, "bad magic (not a statewall sync peer?)"}
	errReserved  = &ProtocolError{ReasonGarbage, "reserved header byte set"}
	errOversized = &ProtocolError{ReasonOversized, fmt.Sprintf("frame longer than %d bytes", MaxFrame)}
	errSeqZero   = &ProtocolError{ReasonGarbage, "seq 0"}
	errFlags     = &ProtocolError{ReasonGarbage, "flag not allowed on this frame type"}
	errBody      = &ProtocolError{ReasonGarbage, "body length does not fit the frame type"}
	errCount     = &ProtocolError{ReasonGarbage, "record count does not match the body length"}
	errHello     = &ProtocolError{ReasonGarbage, "bad HELLO body"}
	errAckZero   = &ProtocolError{ReasonGarbage, "ACK of seq 0"}
)

// header is a decoded frame header.
type header struct {
	version, typ, flags uint8
	length              uint32
	seq                 uint64
}

// parseHeader decodes and checks a frame header: what can be known
// before reading the body (so an oversized frame is refused unread).
func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, errShort
	}
	if string(b[0:4]) != magic {
		return header{}, errMagic
	}
	le := binary.LittleEndian
	h := header{version: b[4], typ: b[5], flags: b[6], length: le.Uint32(b[8:]), seq: le.Uint64(b[12:])}
	switch {
	case h.version != Version:
		return h, &ProtocolError{ReasonVersion, fmt.Sprintf("frame of protocol version %d; this node speaks %d", h.version, Version)}
	case b[7] != 0:
		return h, errReserved
	case h.length > maxBody:
		return h, errOversized
	case h.typ == 0 || h.typ >= numTypes:
		return h, protoErr(ReasonGarbage, "unknown frame type %d", h.typ)
	case h.flags&^allowedFlags[h.typ] != 0:
		return h, errFlags
	case h.seq == 0:
		return h, errSeqZero
	}
	return h, nil
}

// frame is one decoded frame. body aliases the buffer it was decoded
// from: it is valid until that buffer is reused.
type frame struct {
	header
	body []byte
}

// parseFrame decodes the frame at the start of b and checks its body's
// shape (not the contents of records and keys: Install and Record.Key
// check those). It returns the frame and its length. It allocates nothing
// unless it fails with a message that has numbers in it.
func parseFrame(b []byte) (frame, int, error) {
	h, err := parseHeader(b)
	if err != nil {
		return frame{}, 0, err
	}
	n := headerSize + int(h.length)
	if len(b) < n {
		return frame{}, 0, errShort
	}
	f := frame{header: h, body: b[headerSize:n]}
	if err := f.checkBody(); err != nil {
		return frame{}, 0, err
	}
	return f, n, nil
}

func (f *frame) checkBody() error {
	b := f.body
	le := binary.LittleEndian
	switch f.typ {
	case typeHello:
		if len(b) < helloFixed+1 {
			return errHello
		}
		if int(b[1]) != len(b)-helloFixed || b[1] == 0 || [6]byte(b[2:8]) != [6]byte{} {
			return errHello
		}
	case typeRecords, typeDelete:
		size, most := conntrack.RecordSize, MaxRecords
		if f.typ == typeDelete {
			size, most = keySize, MaxDeletes
		}
		if len(b) < 4 {
			return errBody
		}
		c := le.Uint32(b)
		if c == 0 || c > uint32(most) || len(b) != 4+int(c)*size {
			return errCount
		}
	case typeAck:
		if len(b) != 8 {
			return errBody
		}
		if le.Uint64(b) == 0 {
			return errAckZero
		}
	case typeBulkStart, typeBulkEnd:
		if len(b) != 8 {
			return errBody
		}
	case typeKeepalive:
		if len(b) != 0 {
			return errBody
		}
	}
	return nil
}

// count is the number of records or keys of a RECORDS or DELETE frame.
func (f *frame) count() int { return int(binary.LittleEndian.Uint32(f.body)) }

// record is the i'th record of a RECORDS frame, in place.
func (f *frame) record(i int) *conntrack.Record {
	o := 4 + i*conntrack.RecordSize
	return (*conntrack.Record)(f.body[o : o+conntrack.RecordSize])
}

// key decodes the i'th key of a DELETE frame, checking it as a record's
// tuple is checked.
func (f *frame) key(i int) (conntrack.Key, error) {
	var r conntrack.Record
	o := 4 + i*keySize
	copy(r[:keySize], f.body[o:o+keySize])
	return r.Key()
}

// value is the uint64 body of ACK, BULK_START and BULK_END.
func (f *frame) value() uint64 { return binary.LittleEndian.Uint64(f.body) }

// hello is a HELLO body.
type hello struct {
	version uint8
	limit   uint64
	session [16]byte
	name    string
}

func (f *frame) hello() hello {
	b := f.body
	return hello{version: b[0], limit: binary.LittleEndian.Uint64(b[8:]), session: [16]byte(b[16:32]), name: string(b[helloFixed:])}
}

// appendHeader appends a frame header for a body of n bytes.
func appendHeader(b []byte, typ, flags uint8, seq uint64, n int) []byte {
	b = append(b, magic...)
	b = append(b, Version, typ, flags, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	return binary.LittleEndian.AppendUint64(b, seq)
}

// appendHello appends a HELLO frame. The name must be 1 to 255 bytes.
func appendHello(b []byte, seq uint64, h hello) []byte {
	b = appendHeader(b, typeHello, 0, seq, helloFixed+len(h.name))
	b = append(b, h.version, uint8(len(h.name)), 0, 0, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint64(b, h.limit)
	b = append(b, h.session[:]...)
	return append(b, h.name...)
}

// appendValue appends an ACK, BULK_START or BULK_END frame.
func appendValue(b []byte, typ, flags uint8, seq, v uint64) []byte {
	b = appendHeader(b, typ, flags, seq, 8)
	return binary.LittleEndian.AppendUint64(b, v)
}

// appendKeepalive appends a KEEPALIVE frame.
func appendKeepalive(b []byte, seq uint64) []byte {
	return appendHeader(b, typeKeepalive, 0, seq, 0)
}

// batch builds one RECORDS or DELETE frame in place, in a buffer of
// MaxFrame bytes made once: records are exported straight into it.
type batch struct {
	typ uint8
	b   []byte
	n   int
}

func newBatch(typ uint8) *batch {
	bt := &batch{typ: typ, b: make([]byte, 0, MaxFrame)}
	bt.reset()
	return bt
}

// reset empties the batch.
func (bt *batch) reset() {
	bt.b = bt.b[:headerSize+4]
	bt.n = 0
}

func (bt *batch) itemSize() int {
	if bt.typ == typeDelete {
		return keySize
	}
	return conntrack.RecordSize
}

// full reports whether another item would not fit.
func (bt *batch) full() bool { return len(bt.b)+bt.itemSize() > MaxFrame }

// next returns room for one more item and counts it. Precondition: not
// full.
func (bt *batch) next() []byte {
	o := len(bt.b)
	bt.b = bt.b[:o+bt.itemSize()]
	bt.n++
	return bt.b[o:]
}

// unnext takes back the item next just gave (an Export that found no
// entry).
func (bt *batch) unnext() {
	bt.b = bt.b[:len(bt.b)-bt.itemSize()]
	bt.n--
}

// addRecord copies a record in. Precondition: a RECORDS batch, not full.
func (bt *batch) addRecord(r *conntrack.Record) { copy(bt.next(), r[:]) }

// addKey writes a key in. Precondition: a DELETE batch, not full.
func (bt *batch) addKey(k conntrack.Key) { putKey(bt.next(), k) }

// frame finishes the frame with its seq and flags and returns its bytes,
// valid until the next reset. Precondition: at least one item.
func (bt *batch) frame(seq uint64, flags uint8) []byte {
	appendHeader(bt.b[:0], bt.typ, flags, seq, len(bt.b)-headerSize)
	binary.LittleEndian.PutUint32(bt.b[headerSize:], uint32(bt.n))
	return bt.b
}

// putKey writes k as the first 38 bytes of a record (snapshot.go's
// layout) from its exported fields, so that Record.Key reads it back.
func putKey(b []byte, k conntrack.Key) {
	src, dst := k.Src().As16(), k.Dst().As16()
	copy(b[0:16], src[:])
	copy(b[16:32], dst[:])
	var sport, dport uint16
	switch k.Proto() {
	case packet.ProtoICMP, packet.ProtoICMPv6:
		sport, dport = k.ICMPID(), uint16(k.ICMPType())<<8|uint16(k.ICMPCode())
	case packet.ProtoGRE:
		sport, dport = k.GREKeys()
	default:
		sport, dport = k.SrcPort(), k.DstPort()
	}
	binary.LittleEndian.PutUint16(b[32:], sport)
	binary.LittleEndian.PutUint16(b[34:], dport)
	b[36], b[37] = uint8(k.Proto()), k.Family()
}
