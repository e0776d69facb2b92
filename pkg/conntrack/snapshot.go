package conntrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// Snapshots: Save writes the table to a stream and Load reads it back into
// an empty table, so that a restarted statewall (an upgrade, a reboot of the
// daemon) keeps its connections.
//
// The format is versioned, fixed-size and little-endian; every field is
// encoded explicitly (no memory dumps), so the in-memory layout of entry
// and tcpstate.Conn may change without changing the file:
//
//	header  16 bytes
//	  0  magic "SWCT"
//	  4  version      uint16 (snapshotVersion)
//	  6  record size  uint16 (snapshotRecordSize): the record format id
//	  8  count        uint64: number of records
//	records  count * snapshotRecordSize bytes, one per connection
//	  0  src [16], dst [16]   addresses (IPv4 as IPv4-mapped IPv6)
//	 32  sport, dport uint16  (ICMP: identifier, type<<8|code)
//	 36  proto, family uint8
//	 38  flags uint8          bit 0 seen reply, bit 1 assured
//	 39  reserved uint8       0
//	 40  remaining int64      ns until the entry expires (> 0)
//	 48  aux int64            UDP stream_ts, relative to now (ns); 0 for other protocols
//	 56  packets [2]uint32    original, reply
//	 64  bytes [2]uint64      original, reply
//	 80  TCP: State, LastDir, LastIndex, Retrans, LastWScale, LastFlags uint8,
//	     LastWin uint16, LastSeq, LastAck, LastEnd uint32
//	100  TCP peers [2]: End, MaxEnd, MaxWin, MaxAck uint32, Scale, Flags uint8,
//	     2 reserved bytes (0); 20 bytes each
//	trailer  CRC32 (Castagnoli) of the header and the records, uint32
//
// Times are durations relative to the now passed to Save and Load, never
// absolute: the clock of the next run is another clock. The time between
// Save and Load (the restart) is not subtracted from the timeouts.
const (
	snapshotMagic      = "SWCT"
	snapshotVersion    = 1
	snapshotHeaderSize = 16
	snapshotRecordSize = 140
	// snapshotMaxCount bounds the count field, so that no size computed
	// from it overflows; the real bound is the file's length.
	snapshotMaxCount = 1 << 40
)

// Snapshot flag bits (stable across versions, unlike the entry's own).
const (
	snapSeenReply = 1 << 0
	snapAssured   = 1 << 1
)

// ErrSnapshot is wrapped by every error Load returns about the snapshot's
// contents (as opposed to an error reading it).
var ErrSnapshot = errors.New("bad conntrack snapshot")

func snapErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSnapshot, fmt.Sprintf(format, args...))
}

// Save writes every live entry (not expired at now) to w in the snapshot
// format, with timeouts relative to now. Entries are copied one shard at a
// time under that shard's lock; nothing is written with a lock held.
// Concurrent traffic may change entries meanwhile: call Save once the
// table is quiet (the daemon saves after it stopped reading its queues).
func (t *Table) Save(w io.Writer, now int64) error {
	now = t.clock(now)
	var recs []byte
	var rec [snapshotRecordSize]byte
	count := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, sl := range s.slots {
			if sl == 0 {
				continue
			}
			e := s.at(sl&refMask - 1)
			if e.expired(now) {
				continue
			}
			encodeEntry(&rec, e, now)
			recs = append(recs, rec[:]...)
			count++
		}
		s.mu.Unlock()
	}
	var hdr [snapshotHeaderSize]byte
	copy(hdr[:4], snapshotMagic)
	binary.LittleEndian.PutUint16(hdr[4:], snapshotVersion)
	binary.LittleEndian.PutUint16(hdr[6:], snapshotRecordSize)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(count))
	crc := crc32.Update(0, castagnoli, hdr[:])
	crc = crc32.Update(crc, castagnoli, recs)
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], crc)
	for _, b := range [][]byte{hdr[:], recs, tail[:]} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func encodeEntry(b *[snapshotRecordSize]byte, e *entry, now int64) {
	*b = [snapshotRecordSize]byte{}
	le := binary.LittleEndian
	copy(b[0:16], e.key.src[:])
	copy(b[16:32], e.key.dst[:])
	le.PutUint16(b[32:], e.key.sport)
	le.PutUint16(b[34:], e.key.dport)
	b[36], b[37] = e.key.proto, e.key.family
	if e.seenReply() {
		b[38] |= snapSeenReply
	}
	if e.assured() {
		b[38] |= snapAssured
	}
	le.PutUint64(b[40:], uint64(e.expires-now))
	if e.key.proto == packet.ProtoUDP {
		// It only says whether udpStreamAfter has passed: clamp it so that
		// it cannot overflow when added to the next run's clock.
		aux := min(max(*e.streamTS()-now, -int64(udpStreamAfter)), int64(udpStreamAfter))
		le.PutUint64(b[48:], uint64(aux))
	}
	le.PutUint32(b[56:], e.packets[0])
	le.PutUint32(b[60:], e.packets[1])
	le.PutUint64(b[64:], e.bytes[0])
	le.PutUint64(b[72:], e.bytes[1])
	if e.key.proto != packet.ProtoTCP {
		return // the TCP state's place holds UDP's stream timestamp, written above
	}
	c := &e.tcp
	b[80], b[81], b[82], b[83], b[84], b[85] = uint8(c.State), uint8(c.LastDir), uint8(c.LastIndex), c.Retrans, c.LastWScale, c.LastFlags
	le.PutUint16(b[86:], c.LastWin)
	le.PutUint32(b[88:], c.LastSeq)
	le.PutUint32(b[92:], c.LastAck)
	le.PutUint32(b[96:], c.LastEnd)
	for i := range c.Peer {
		p, o := &c.Peer[i], 100+20*i
		le.PutUint32(b[o:], p.End)
		le.PutUint32(b[o+4:], p.MaxEnd)
		le.PutUint32(b[o+8:], p.MaxWin)
		le.PutUint32(b[o+12:], p.MaxAck)
		b[o+16], b[o+17] = c.Scale[i], c.Flags[i]
	}
}

// loaded is one decoded record.
type loaded struct {
	e         entry
	remaining int64 // until the entry expires, from the snapshot's now
	aux       int64 // UDP stream_ts, relative to the snapshot's now
}

func decodeEntry(b []byte, i int) (loaded, error) {
	le := binary.LittleEndian
	var l loaded
	e := &l.e
	copy(e.key.src[:], b[0:16])
	copy(e.key.dst[:], b[16:32])
	e.key.sport, e.key.dport = le.Uint16(b[32:]), le.Uint16(b[34:])
	e.key.proto, e.key.family = b[36], b[37]
	if err := checkKey(&e.key); err != nil {
		return l, snapErr("record %d: %v", i, err)
	}
	if b[38]&^(snapSeenReply|snapAssured) != 0 || b[39] != 0 {
		return l, snapErr("record %d: unknown flags %#x %#x", i, b[38], b[39])
	}
	if b[38]&snapSeenReply != 0 {
		e.flags |= flagSeenReply
	}
	if b[38]&snapAssured != 0 {
		e.flags |= flagAssured
	}
	l.remaining = int64(le.Uint64(b[40:]))
	if l.remaining <= 0 {
		return l, snapErr("record %d: timeout %v is not positive", i, time.Duration(l.remaining))
	}
	l.aux = int64(le.Uint64(b[48:]))
	if l.aux < -int64(udpStreamAfter) || l.aux > int64(udpStreamAfter) {
		return l, snapErr("record %d: UDP stream time %v out of range", i, time.Duration(l.aux))
	}
	e.packets[0], e.packets[1] = le.Uint32(b[56:]), le.Uint32(b[60:])
	e.bytes[0], e.bytes[1] = le.Uint64(b[64:]), le.Uint64(b[72:])
	c := &e.tcp
	c.State, c.LastDir, c.LastIndex = tcpstate.State(b[80]), tcpstate.Dir(b[81]), tcpstate.Index(b[82])
	c.Retrans, c.LastWScale, c.LastFlags = b[83], b[84], b[85]
	c.LastWin = le.Uint16(b[86:])
	c.LastSeq, c.LastAck, c.LastEnd = le.Uint32(b[88:]), le.Uint32(b[92:]), le.Uint32(b[96:])
	for j := range c.Peer {
		p, o := &c.Peer[j], 100+20*j
		p.End, p.MaxEnd, p.MaxWin, p.MaxAck = le.Uint32(b[o:]), le.Uint32(b[o+4:]), le.Uint32(b[o+8:]), le.Uint32(b[o+12:])
		c.Scale[j], c.Flags[j] = b[o+16], b[o+17]
		if b[o+18] != 0 || b[o+19] != 0 {
			return l, snapErr("record %d: reserved TCP bytes set", i)
		}
		if c.Scale[j] > 14 {
			return l, snapErr("record %d: TCP window scale %d above 14", i, c.Scale[j])
		}
	}
	if e.key.proto != packet.ProtoTCP {
		if *c != (tcpstate.Conn{}) {
			return l, snapErr("record %d: TCP state on a %s entry", i, protoName(e.key.proto))
		}
		return l, nil
	}
	switch {
	case c.State >= tcpstate.NumStates:
		return l, snapErr("record %d: TCP state %d out of range", i, c.State)
	case c.LastDir > tcpstate.Reply:
		return l, snapErr("record %d: TCP direction %d out of range", i, c.LastDir)
	case c.LastIndex > tcpstate.IndexNone:
		return l, snapErr("record %d: TCP flag index %d out of range", i, c.LastIndex)
	case c.LastWScale > 14:
		return l, snapErr("record %d: TCP window scale %d above 14", i, c.LastWScale)
	}
	return l, nil
}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprintf("protocol %d", p)
}

// checkKey reports whether k is a tuple the table could have stored.
func checkKey(k *Key) error {
	switch k.family {
	case 4:
		for _, a := range [][16]byte{k.src, k.dst} {
			if [12]byte(a[:12]) != [12]byte{10: 0xff, 11: 0xff} {
				return errors.New("IPv4 entry with an address that is not IPv4-mapped")
			}
		}
	case 6:
	default:
		return fmt.Errorf("address family %d", k.family)
	}
	switch {
	case k.proto == packet.ProtoICMP && k.family != 4, k.proto == packet.ProtoICMPv6 && k.family != 6:
		return fmt.Errorf("%s over IPv%d", protoName(k.proto), k.family)
	case isICMP(k.proto):
		if !icmpInvertible(k.proto, uint8(k.dport>>8)) {
			return fmt.Errorf("%s type %d cannot have an entry", protoName(k.proto), k.dport>>8)
		}
	case !hasPorts(k.proto) && (k.sport != 0 || k.dport != 0):
		return fmt.Errorf("ports on a %s entry", protoName(k.proto))
	}
	return nil
}

// Load reads a snapshot that Save wrote into the table, which must be
// empty, and returns how many entries it inserted; timeouts are counted
// from now. Nothing is inserted until the whole snapshot is checked: the
// magic, the version, the record size, the count against the length, the
// CRC, and every record (family, protocol, ports, flags, TCP state and
// window scales, positive timeout, no connection twice). On any error the
// table stays empty; errors about the contents wrap ErrSnapshot.
//
// A snapshot with more entries than the table's limit (the limit was
// lowered meanwhile) loads assured entries first, then the others, until
// the table is full; the rest are dropped, and n says how many made it.
//
// Load reads r to its end (EOF); bytes after the trailer are an error.
// Call it before the table sees traffic: an entry that a packet created
// meanwhile is kept, and the snapshot's copy is dropped.
func (t *Table) Load(r io.Reader, now int64) (n int, err error) {
	if t.count.Load() != 0 {
		return 0, errors.New("conntrack: Load needs an empty table")
	}
	now = t.clock(now)
	var hdr [snapshotHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, snapErr("truncated header (%v)", err)
		}
		return 0, err
	}
	if string(hdr[:4]) != snapshotMagic {
		return 0, snapErr("not a statewall conntrack snapshot (magic %q, want %q)", hdr[:4], snapshotMagic)
	}
	if v := binary.LittleEndian.Uint16(hdr[4:]); v != snapshotVersion {
		return 0, snapErr("unsupported version %d (this statewall reads version %d)", v, snapshotVersion)
	}
	if sz := binary.LittleEndian.Uint16(hdr[6:]); sz != snapshotRecordSize {
		return 0, snapErr("record size %d, want %d", sz, snapshotRecordSize)
	}
	count := binary.LittleEndian.Uint64(hdr[8:])
	if count > snapshotMaxCount {
		return 0, snapErr("entry count %d is absurd", count)
	}
	// Read what is there, up to one byte more than the count announces:
	// memory follows the stream's real length, not the (maybe corrupt)
	// count.
	want := int64(count)*snapshotRecordSize + 4
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(r, want+1)); err != nil {
		return 0, err
	}
	body := buf.Bytes()
	switch {
	case int64(len(body)) < want:
		return 0, snapErr("truncated: %d entries announced, %d bytes of the %d they need", count, len(body), want)
	case int64(len(body)) > want:
		return 0, snapErr("longer than its %d entries", count)
	}
	recs := body[:len(body)-4]
	crc := crc32.Update(0, castagnoli, hdr[:])
	crc = crc32.Update(crc, castagnoli, recs)
	if got := binary.LittleEndian.Uint32(body[len(body)-4:]); got != crc {
		return 0, snapErr("checksum mismatch (CRC32C %08x, computed %08x): the file is corrupt", got, crc)
	}

	all := make([]loaded, 0, count)
	seen := make(map[Key]struct{}, 2*count)
	for i := range int(count) {
		l, err := decodeEntry(recs[i*snapshotRecordSize:(i+1)*snapshotRecordSize], i)
		if err != nil {
			return 0, err
		}
		if now > 0 && l.remaining > math.MaxInt64-now {
			return 0, snapErr("record %d: timeout %v overflows the clock", i, time.Duration(l.remaining))
		}
		k, kr := l.e.key, l.e.key.Reply()
		_, dup := seen[k]
		_, dupr := seen[kr]
		if dup || dupr {
			return 0, snapErr("record %d: connection %v appears twice", i, k)
		}
		seen[k], seen[kr] = struct{}{}, struct{}{}
		all = append(all, l)
	}

	// Assured entries first, so that a lowered limit keeps them.
	for _, assured := range []bool{true, false} {
		for i := range all {
			l := &all[i]
			if l.e.assured() != assured {
				continue
			}
			if t.count.Load() >= t.limit {
				return n, nil
			}
			if t.insertLoaded(l, now) {
				n++
			}
		}
	}
	return n, nil
}

// insertLoaded stores a checked record; false when its connection is
// already there or its shard is full.
func (t *Table) insertLoaded(l *loaded, now int64) bool {
	h := t.hash.sum(&l.e.key)
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, _, _, ok := s.find(&l.e.key, h); ok {
		return false
	}
	s.reserveSlot(now)
	idx, ok := s.alloc()
	if !ok {
		return false
	}
	e := s.at(idx)
	*e = l.e
	s.setDeadline(e, now+l.remaining)
	if e.key.proto == packet.ProtoUDP {
		*e.streamTS() = now + l.aux
	}
	s.insertSlot(h, idx)
	s.n++
	t.count.Add(1)
	return true
}
