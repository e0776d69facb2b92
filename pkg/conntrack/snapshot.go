package conntrack

import (
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
//	 32  sport, dport uint16  (ICMP: identifier, type<<8|code; GRE: keys, 0 and call id)
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
//	 80  SCTP instead: State uint8, init flags uint8 (bit 0 original, bit 1
//	     reply), heartbeat flags uint8 (bit 0 vtag check failed, bit 1 in
//	     the reply direction), 5 reserved bytes (0), verification tags
//	     [2]uint32 (original, reply); 0 up to 140
//	     (every other protocol: 0 from 80 to 140)
//	trailer  CRC32 (Castagnoli) of the header and the records, uint32
//
// The SCTP state came in version 1's place for it, where statewall wrote 0
// before it kept SCTP states: such a record (state NONE, which no entry
// has) is dropped by Load (sctpLegacy), not refused, so a snapshot from
// before still loads its other connections.
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
	b[36], b[37] = uint8(e.key.proto), e.key.family
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
		if e.key.proto == packet.ProtoSCTP {
			encodeSCTP(b, e.sctp())
		}
		return // the TCP state's place holds UDP's stream timestamp, written above
	}
	c := &e.tcp
	b[80], b[81], b[82], b[83], b[84], b[85] = uint8(c.State), uint8(c.LastDir), uint8(c.LastIndex), c.Retrans, c.LastWScale, c.LastFlags
	le.PutUint16(b[86:], c.LastWin)
	le.PutUint32(b[88:], uint32(c.LastSeq))
	le.PutUint32(b[92:], uint32(c.LastAck))
	le.PutUint32(b[96:], uint32(c.LastEnd))
	for i := range c.Peer {
		p, o := &c.Peer[i], 100+20*i
		le.PutUint32(b[o:], uint32(p.End))
		le.PutUint32(b[o+4:], uint32(p.MaxEnd))
		le.PutUint32(b[o+8:], p.MaxWin)
		le.PutUint32(b[o+12:], uint32(p.MaxAck))
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
	e.key.proto, e.key.family = packet.Proto(b[36]), b[37]
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
	if e.key.proto == packet.ProtoSCTP {
		if err := decodeSCTP(b, e.sctp()); err != nil {
			return l, snapErr("record %d: %v", i, err)
		}
		return l, nil
	}
	c := &e.tcp
	c.State, c.LastDir, c.LastIndex = tcpstate.State(b[80]), tcpstate.Dir(b[81]), tcpstate.Index(b[82])
	c.Retrans, c.LastWScale, c.LastFlags = b[83], b[84], b[85]
	c.LastWin = le.Uint16(b[86:])
	c.LastSeq, c.LastAck, c.LastEnd = tcpstate.Seq(le.Uint32(b[88:])), tcpstate.Seq(le.Uint32(b[92:])), tcpstate.Seq(le.Uint32(b[96:]))
	for j := range c.Peer {
		p, o := &c.Peer[j], 100+20*j
		p.End, p.MaxEnd, p.MaxWin, p.MaxAck = tcpstate.Seq(le.Uint32(b[o:])), tcpstate.Seq(le.Uint32(b[o+4:])), le.Uint32(b[o+8:]), tcpstate.Seq(le.Uint32(b[o+12:]))
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
			return l, snapErr("record %d: TCP state on a %s entry", i, e.key.proto.String())
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

// encodeSCTP writes an SCTP entry's state into its record (see the
// format above).
func encodeSCTP(b *[snapshotRecordSize]byte, c *sctpConn) {
	le := binary.LittleEndian
	b[80] = uint8(c.state)
	if c.init[0] {
		b[81] |= 1
	}
	if c.init[1] {
		b[81] |= 2
	}
	if c.hbFailed {
		b[82] |= 1
	}
	if c.lastDir == 1 {
		b[82] |= 2
	}
	le.PutUint32(b[88:], c.vtag[0])
	le.PutUint32(b[92:], c.vtag[1])
}

// decodeSCTP reads an SCTP entry's state from its record and checks it.
// A record whose SCTP bytes are all 0 (state NONE) comes from a statewall
// that did not keep SCTP states; it decodes to NONE, and Load drops it
// (sctpLegacy).
func decodeSCTP(b []byte, c *sctpConn) error {
	le := binary.LittleEndian
	c.state = SCTPState(b[80])
	c.init = [2]bool{b[81]&1 != 0, b[81]&2 != 0}
	c.hbFailed, c.lastDir = b[82]&1 != 0, b[82]>>1&1
	c.vtag = [2]uint32{le.Uint32(b[88:]), le.Uint32(b[92:])}
	switch {
	case c.state >= numSCTPStates:
		return fmt.Errorf("SCTP state %d out of range", c.state)
	case b[81]&^3 != 0 || b[82]&^3 != 0:
		return fmt.Errorf("unknown SCTP flags %#x %#x", b[81], b[82])
	case c.state == SCTPNone && (b[81] != 0 || b[82] != 0 || c.vtag != [2]uint32{}):
		return errors.New("SCTP state NONE with tags or flags")
	}
	for _, x := range b[83:88] {
		if x != 0 {
			return errors.New("reserved SCTP bytes set")
		}
	}
	for _, x := range b[96:snapshotRecordSize] {
		if x != 0 {
			return errors.New("bytes after the SCTP state set")
		}
	}
	return nil
}

// sctpLegacy reports a record of an SCTP association that a statewall
// before SCTP states saved (all its SCTP bytes 0, state NONE, which no
// entry has once its first packet is through): it holds no verification
// tags, so the association cannot go on as the kernel would track it. Load
// drops it, as a kernel that lost an association would have none: its
// DATA is then invalid and a new INIT or HEARTBEAT starts again.
func sctpLegacy(e *entry) bool {
	return e.key.proto == packet.ProtoSCTP && e.sctp().state == SCTPNone
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
		return fmt.Errorf("%s over IPv%d", k.proto.String(), k.family)
	case isICMP(k.proto):
		if !icmpInvertible(k.proto, uint8(k.dport>>8)) {
			return fmt.Errorf("%s type %d cannot have an entry", k.proto.String(), k.dport>>8)
		}
	case k.proto == packet.ProtoGRE:
		if k.sport != 0 {
			return fmt.Errorf("GRE source key %#x (always 0 without a PPTP helper)", k.sport)
		}
	case !hasPorts(k.proto) && (k.sport != 0 || k.dport != 0):
		return fmt.Errorf("ports on a %s entry", k.proto.String())
	}
	return nil
}

// Load reads a snapshot that Save wrote into the table, which must be
// empty, and returns how many entries it inserted; timeouts are counted
// from now. Nothing is inserted until the whole snapshot is checked: the
// magic, the version, the record size, the count against the length, the
// CRC, and every record (family, protocol, ports, flags, TCP state and
// window scales, positive timeout, no connection twice among the records
// it keeps). On any error the table stays empty; errors about the contents
// wrap ErrSnapshot.
//
// Every timeout is capped by the table's own timeout for the entry's
// state (see maxTimeout): a snapshot cannot restore an entry for longer
// than a packet could have kept it alive under this table's timeouts,
// whether the file was crafted or the timeouts were lowered meanwhile.
//
// A snapshot with more entries than the table's limit (the limit was
// lowered meanwhile) loads assured entries first, then the others, until
// the table is full; the rest are dropped, and n says how many made it.
//
// Memory is bounded by the table's limit, not by the stream: Load reads
// the records in chunks of snapshotChunk, computing the CRC as it goes,
// and keeps at most limit decoded records (an assured record displaces
// the last unassured one kept, which gives the order above). Every record
// is still decoded and checked, and the CRC covers the whole stream. A
// connection that appears twice is found when either copy is kept, or
// was kept and then displaced (the tuples of at most twice limit records
// are remembered); two copies that are both dropped on arrival are not
// looked for, and neither can reach the table. A count beyond
// the stream costs nothing: the stream ends and Load says "truncated".
// Measured: 1M records (140 MB) into a table limited to 1000 entries
// allocate 1.2 MiB (TestSnapshotLoadBoundedMemory); the former code,
// which read the stream whole, allocated 841 MiB.
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
	want := int64(count)*snapshotRecordSize + 4
	truncated := func(got int64) error {
		return snapErr("truncated: %d entries announced, %d bytes of the %d they need", count, got, want)
	}

	k := newKeeper(int(min(count, uint64(t.limit))))
	// The first error about a record is reported only once the stream is
	// known to be whole and its CRC right: a flipped bit is "checksum
	// mismatch" wherever it is, as when the stream was checked first.
	var recErr error
	crc := crc32.Update(0, castagnoli, hdr[:])
	buf := make([]byte, min(count, snapshotChunk)*snapshotRecordSize)
	var got int64 // bytes read after the header
	for i := uint64(0); i < count; {
		c := min(count-i, snapshotChunk)
		b := buf[:c*snapshotRecordSize]
		m, err := io.ReadFull(r, b)
		got += int64(m)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, truncated(got)
			}
			return 0, err
		}
		crc = crc32.Update(crc, castagnoli, b)
		for j := range int(c) {
			if recErr != nil {
				break
			}
			recErr = t.loadRecord(k, b[j*snapshotRecordSize:(j+1)*snapshotRecordSize], int(i)+j, now)
		}
		i += c
	}
	var tail [4]byte
	m, err := io.ReadFull(r, tail[:])
	got += int64(m)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, truncated(got)
		}
		return 0, err
	}
	var extra [1]byte
	switch m, err := io.ReadFull(r, extra[:]); {
	case m > 0:
		return 0, snapErr("longer than its %d entries", count)
	case err != nil && !errors.Is(err, io.EOF):
		return 0, err
	}
	if sum := binary.LittleEndian.Uint32(tail[:]); sum != crc {
		return 0, snapErr("checksum mismatch (CRC32C %08x, computed %08x): the file is corrupt", sum, crc)
	}
	if recErr != nil {
		return 0, recErr
	}

	// Assured entries first, so that entries a packet created meanwhile
	// leave room for them before the others.
	for _, assured := range []bool{true, false} {
		for i := range k.recs {
			l := &k.recs[i]
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

// snapshotChunk is how many records Load reads at a time: 64 KiB.
const snapshotChunk = 468

// keeper holds the records Load keeps: at most limit, the assured ones
// first. Its memory is O(limit) whatever the number of records offered.
type keeper struct {
	limit int
	recs  []loaded
	// other lists the indexes in recs of the unassured records, in stream
	// order: an assured record arriving when recs is full takes the place
	// of the last one.
	other []int32
	// seen holds both tuples of every record ever kept, displaced ones
	// included: at most limit records plus one displaced per assured one.
	seen map[Key]struct{}
}

func newKeeper(limit int) *keeper {
	return &keeper{limit: limit, seen: make(map[Key]struct{}, min(2*limit, 1<<12))}
}

// offer keeps l if there is room for it, or if it is assured and an
// unassured record can make room; it reports a connection seen twice.
func (k *keeper) offer(l *loaded) (dup bool) {
	key, reply := l.e.key, l.e.key.Reply()
	_, dup = k.seen[key]
	_, dupr := k.seen[reply]
	if dup || dupr {
		return true
	}
	switch {
	case len(k.recs) < k.limit:
		if !l.e.assured() {
			k.other = append(k.other, int32(len(k.recs)))
		}
		k.recs = append(k.recs, *l)
	case l.e.assured() && len(k.other) > 0:
		i := k.other[len(k.other)-1]
		k.other = k.other[:len(k.other)-1]
		k.recs[i] = *l
	default:
		return false
	}
	k.seen[key], k.seen[reply] = struct{}{}, struct{}{}
	return false
}

// loadRecord decodes and checks record i, caps its timeout and offers it
// to k.
func (t *Table) loadRecord(k *keeper, b []byte, i int, now int64) error {
	l, err := decodeEntry(b, i)
	if err != nil {
		return err
	}
	if sctpLegacy(&l.e) {
		return nil
	}
	l.remaining = min(l.remaining, int64(t.maxTimeout(&l.e)))
	if now > 0 && l.remaining > math.MaxInt64-now {
		return snapErr("record %d: timeout %v overflows the clock", i, time.Duration(l.remaining))
	}
	if k.offer(&l) {
		return snapErr("record %d: connection %v appears twice", i, l.e.key)
	}
	return nil
}

// maxTimeout is the longest timeout a packet can give e under the table's
// timeouts, which caps the timeout a snapshot restores. TCP: the timeout
// of its state (a new entry in NONE gets SYN_SENT's), or CLOSE's if that
// is longer, as an RST that leaves the state as it is sets CLOSE's;
// everything else lowers it (retransmissions, unacknowledged data, a
// pickup without a reply). UDP and UDP-Lite: the stream timeout for an
// assured entry (the packet that assures it sets it, and every later one),
// the UDP timeout otherwise; GRE likewise with its own two. SCTP: the
// timeout of its state (every packet that refreshes an SCTP entry sets
// its new state's; a packet that changes the state without refreshing,
// rare, is capped lower here than the kernel would keep it). ICMP, ICMPv6
// and the rest: their one timeout.
func (t *Table) maxTimeout(e *entry) time.Duration {
	switch e.key.proto {
	case packet.ProtoTCP:
		return max(tcpTimeout(&t.to.TCP, e.tcp.State), t.to.TCP.Close)
	case packet.ProtoUDP, packet.ProtoUDPLite:
		if e.assured() {
			return t.to.UDPStream
		}
		return t.to.UDP
	case packet.ProtoICMP:
		return t.to.ICMP
	case packet.ProtoICMPv6:
		return t.to.ICMPv6
	case packet.ProtoSCTP:
		return t.to.SCTP.of(e.sctp().state)
	case packet.ProtoGRE:
		if e.assured() {
			return t.to.GREStream
		}
		return t.to.GRE
	}
	return t.to.Generic
}

// tcpTimeout is the timeout of TCP state s (the fields are set: the
// table's timeouts went through WithDefaults).
func tcpTimeout(to *tcpstate.Timeouts, s tcpstate.State) time.Duration {
	switch s {
	case tcpstate.SynRecv:
		return to.SynRecv
	case tcpstate.Established:
		return to.Established
	case tcpstate.FinWait:
		return to.FinWait
	case tcpstate.CloseWait:
		return to.CloseWait
	case tcpstate.LastAck:
		return to.LastAck
	case tcpstate.TimeWait:
		return to.TimeWait
	case tcpstate.Close:
		return to.Close
	case tcpstate.SynSent2:
		return to.SynSent2
	}
	return to.SynSent // SYN_SENT, and NONE (trackTCP's default)
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
	if e.key.proto == packet.ProtoTCP {
		// The connection went on unseen while no statewall ran (after a
		// clean stop the divert rules are gone; after a crash, packets
		// waited or were retransmitted): its window edges are stale. Pick
		// it up as conntrackd-restored entries are, with liberal window
		// tracking both ways, so that its next packets are not invalid.
		e.tcp.Flags[0] |= tcpstate.PeerBeLiberal
		e.tcp.Flags[1] |= tcpstate.PeerBeLiberal
	}
	s.st.restored.Add(1)
	s.setDeadline(e, now+l.remaining)
	if e.key.proto == packet.ProtoUDP {
		*e.streamTS() = now + l.aux
	}
	s.insertSlot(h, idx)
	s.n++
	t.count.Add(1)
	return true
}
