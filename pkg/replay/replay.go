// Package replay runs captured packets through the engines: pcap and pcapng
// files in, one Record per packet out, in file order, with the packets'
// own timestamps as the connection tracker's clock so that a replay is
// deterministic.
//
// That clock never goes back: a packet stamped earlier than the latest one
// seen (captures merged from several hosts, files given out of order, a
// capturing host whose clock was stepped) is decided at the latest time,
// and the step is counted (Replayer.Clock). Together with a fixed hash
// seed (Config.Seed, DefaultSeed unless told), the same captures give the
// same records every time, full tables included.
//
// Conntrack sees whole datagrams only, so a fragment's stateful decision
// waits for its datagram, and to keep file order every record after a
// fragment still pending is held back with it. A datagram is pending until
// it completes, reassembly drops it, or it times out (30 s for IPv4, 60 s
// for IPv6) on the capture's clock, which a hostile capture chooses: one
// fragment that never completes, then packets all stamped within its
// timeout, would hold every one of them. So the held records are capped,
// at Config.MaxHeld records and Config.MaxHeldBytes bytes (by default
// 1<<20 records, and 256 MiB, which at 264 bytes a record binds first, at
// 1,016,800 records): at the cap, the oldest datagram still pending is
// given up, its fragments are blocked with the reason "incomplete
// datagram: replay's hold limit reached", reassembly forgets it, and the
// records behind it go on. Memory is then bounded by
// the cap, and time is linear in the capture.
//
// The cap changes what a replay says only about a datagram still
// incomplete 1<<20 packets after its first fragment: its fragments get
// that reason rather than "incomplete datagram timed out", with the same
// verdict, unless its missing fragments come later still, within its
// timeout, when the kernel would complete it and the replay does not.
// Fragments of a datagram are sent back to back, so on real traffic this
// takes a lost fragment in a capture busier than 35,000 packets a second
// (1<<20 in 30 s; IPv6, 17,500), and then only the reason changes.
package replay

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/defrag"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/pflog"
	"github.com/statewall/statewall/pkg/rules"
)

// Mode selects the engines a replay runs.
type Mode uint8

const (
	// Compare runs both engines on every packet (the default).
	Compare Mode = iota
	Stateless
	Stateful
)

func (m Mode) String() string {
	switch m {
	case Stateless:
		return "stateless"
	case Stateful:
		return "stateful"
	}
	return "compare"
}

// ParseMode parses a --mode value.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "compare", "":
		return Compare, nil
	case "stateless":
		return Stateless, nil
	case "stateful":
		return Stateful, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want compare, stateless or stateful)", s)
}

// Config configures a replay. Rules is required; the zero value of the rest
// means: compare mode, conntrack sized and timed by the ruleset.
type Config struct {
	Rules *rules.Ruleset
	Mode  Mode
	// NoChecksum: conntrack does not verify transport checksums (the
	// kernel's nf_conntrack_checksum=0). By default it does, and a packet
	// with a wrong one is invalid, as in the kernel. Captures taken on the
	// sending host carry checksums the NIC had yet to fill in; replay those
	// with NoChecksum.
	NoChecksum bool
	// Seed seeds conntrack's hash, which decides where entries sit and so
	// which unassured entry early drop evicts in a full table: with the
	// same seed, a replay gives the same output every time. 0 means
	// DefaultSeed.
	Seed uint64
	// StrictTime refuses a capture whose timestamps go back (an
	// ErrTimeBackwards FileError at the first such packet) instead of
	// deciding such packets at the latest time seen.
	StrictTime bool
	// MaxHeld and MaxHeldBytes cap the records held back behind a
	// fragment whose datagram is still pending (see the package comment):
	// when the next record would pass either, the oldest pending datagram
	// is given up, its fragments blocked as "incomplete datagram: replay's
	// hold limit reached". Each held record counts HeldRecordSize bytes:
	// records hold no packet bytes, and their strings (the file name,
	// shared by all the records of a file, and constant reasons) cost
	// nothing per record. The queue's memory is the cap at most, plus
	// three blocks of 73 records (48 KiB). 0 means DefaultMaxHeld and
	// DefaultMaxHeldBytes. A datagram whose fragments are further apart
	// than the cap never completes.
	MaxHeld      int
	MaxHeldBytes int

	// Interfaces, for rules that say `on IFACE` and for antispoof. A
	// pcapng names each packet's interface (its Interface Description
	// Block); Iface names the interface packets are seen on when the
	// capture does not (a pcap, or a pcapng interface without a name).
	// IfaceOut names the interface forwarded packets leave by: with it, a
	// packet of neither side of `set local` is decided as forwarded,
	// inbound on its interface and outbound on IfaceOut (it passes only
	// if both pass), and a packet from a local address leaves by it.
	// Without it such a packet is decided with no direction on its
	// interface.
	Iface, IfaceOut string
	// Ifaces give interfaces their addresses, which antispoof reads (the
	// daemon learns them from the kernel). Their Index is ignored: replay
	// numbers the interfaces itself (KnownIfaces).
	Ifaces []rules.Iface
	// Log, when set, gets a pflog record for every packet a `log` rule
	// decides, and for `log (all)` the later packets of its connections
	// (see log.go): the stateful engine's decisions in modes compare and
	// stateful, the stateless engine's in mode stateless. An error
	// writing it stops the replay.
	Log *pflog.Writer
}

// The default caps on held records: 1<<20 records, and 256 MiB, which
// binds first since records have interfaces (264 bytes a record on 64-bit
// platforms: 1,016,800 records).
// A datagram still incomplete 1<<20 packets after its first fragment has
// lost a fragment, on real traffic: its fragments were sent back to back
// and the kernel would time it out (see the package comment).
const (
	DefaultMaxHeld      = 1 << 20
	DefaultMaxHeldBytes = 256 << 20
)

// HeldRecordSize is what a held record counts against
// Config.MaxHeldBytes: the size of its slot in the queue.
const HeldRecordSize = int(unsafe.Sizeof(heldRecord{}))

// reasonHoldLimit is the stateful decision's detail for the fragments of a
// datagram given up at the hold limit.
const reasonHoldLimit = "incomplete datagram: replay's hold limit reached"

// DefaultSeed is conntrack's hash seed in a replay unless Config.Seed says
// otherwise. A fixed seed makes replays reproducible; it does not weaken
// anything offline, where no attacker aims at the hash (the daemon's seed
// is random).
const DefaultSeed = 1

// ErrTimeBackwards is a packet stamped earlier than one before it, in a
// replay with Config.StrictTime.
var ErrTimeBackwards = errors.New("timestamp earlier than a previous packet's")

// ClockSteps says how often a replay's timestamps went back, and the
// largest step: each such packet was decided at the latest time seen.
type ClockSteps struct {
	Back    int
	Largest time.Duration
}

// Record is what the replay says about one packet. The Replayer reuses one
// Record for every packet: a sink must copy what it keeps.
type Record struct {
	File  string
	Index int // 0-based index of the packet within its file
	TS    time.Time
	Len   int // length of the packet on the wire

	Kind      packet.Kind
	IPVersion uint8
	Proto     packet.Proto
	Src, Dst  netip.Addr
	SrcPort   uint16
	DstPort   uint16
	HasPorts  bool
	TCPFlags  uint8
	ICMPType  uint8
	ICMPCode  uint8
	Fragment  bool
	Dir       rules.Dir
	// HasStateless and HasStateful: the engine ran (here, in what was
	// padding, rather than before their decisions: the record is 16 bytes
	// smaller, and the hold queue holds a million of them).
	HasStateless, HasStateful bool
	// Logged is how many pflog records Config.Log got for the packet:
	// one, or for a forwarded packet one per evaluation whose rule logs.
	// In stateful mode a fragmented datagram is logged once, whole, and
	// counted on the fragment that completed it.
	Logged uint8
	// In and Out are the names of the interfaces the packet was decided
	// on: In the one it arrived on, Out the one it leaves by ("": none;
	// see Config.IfaceOut).
	In, Out string

	Stateless engine.Decision
	Stateful  engine.Decision
}

// Agreement compares the two verdicts (Agree when only one engine ran).
func (r *Record) Agreement() engine.Agreement {
	if !r.HasStateless || !r.HasStateful {
		return engine.Agree
	}
	return engine.Compare(r.Stateless, r.Stateful)
}

// Sink receives each record in order; an error stops the replay.
type Sink func(*Record) error

// Replayer holds the engines, so that several files replayed by one
// Replayer share connection state, as packets captured in sequence would.
type Replayer struct {
	cfg       Config
	stateless *engine.Stateless
	stateful  *engine.Stateful
	rec       Record

	// Once the connection table outgrows the caches, the packets of a
	// file are read, decoded and announced to conntrack
	// (Stateful.PrefetchBatch, into cb) batchSize at a time, then decided
	// in order (Stateful.DecideBatch: inBatch is the packet's place in cb,
	// -1 outside a batch), so that the table's cache misses overlap; see
	// conntrack.Table.Prefetch. The reader reuses its buffer, so each
	// packet of a batch is copied into bufs.
	pkts    [batchSize]packet.Packet
	cb      conntrack.Batch
	inBatch int
	// batch, for tests: 0 decides by the table's size (above), 1 never
	// batches, batchSize always does.
	batch int
	bufs  [batchSize][]byte
	meta  [batchSize]packetMeta

	// Fragments: conntrack sees only whole datagrams, so the stateful
	// engine decides a fragmented datagram once it is reassembled and every
	// fragment gets that decision, as in the kernel. Records wait in held,
	// in file order, until the first one is decided, holdLimit of them at
	// most; seq numbers packets across files and is the reassembler's
	// token.
	defrag    *defrag.Reassembler
	whole     packet.Packet // the reassembled datagram
	held      holdQueue
	holdLimit int
	seq       int

	// The replay's clock: the latest timestamp seen, in nanoseconds, and
	// the steps back from it.
	latest  int64
	started bool
	steps   ClockSteps

	// Interfaces (iface.go): rs is Config.Rules bound to them; ifNames[i-1]
	// is the name of index i, ifIndex the reverse; iface and ifaceOut are
	// Config.Iface's and Config.IfaceOut's indexes (0: not given).
	rs              *rules.Ruleset
	ifNames         []string
	ifIndex         map[string]uint32
	iface, ifaceOut uint32
	lastName        string
	lastIndex       uint32

	// Logging (log.go): the record written, reused; the interfaces' names
	// as pflog carries them, by index.
	logRec     pflog.Record
	pflogNames []pflog.Ifname
}

// batchSize is how many packets replay reads ahead.
const batchSize = conntrack.BatchSize

// packetMeta is what the capture says about a packet besides its bytes.
type packetMeta struct {
	link    packet.LinkType
	iface   uint32 // the interface it was seen on (0: none named)
	ts      time.Time
	wireLen int // the length on the wire (0: unknown)
	capLen  int // the bytes captured
}

type heldRecord struct {
	rec     Record
	pending bool   // the stateful decision is not known yet
	fragID  uint32 // a fragment's datagram id, for Discard (in what was padding)
}

// holdQueue is the records held back, in file order: n records from
// blocks[first][head], numbered from base (the replay's seq). Records sit
// in blocks of holdBlock, so a record costs O(1) and none is ever copied:
// a block is added when the last is full and let go when the head leaves
// it, one kept for reuse, so memory follows the records held. Only the
// list of blocks is compacted, once first passes half of it: amortized
// O(1) per block.
//
// A slice with a head index, or a ring that doubles, copies records: a
// slice that moves its records down once the head passes half of it would,
// at the limit with the head near the start, move them all for each new
// record; a doubling ring, on one incomplete fragment then 2M packets
// (default caps), allocated 470 MB and peaked at 871 MB resident, where
// the blocks allocate 236 MB and peak at 425 MB.
type holdQueue struct {
	blocks  [][]heldRecord
	first   int // blocks[first:] are in use
	head, n int
	base    int
	spare   []heldRecord
	moved   int // elements copied (block pointers), for tests
}

// holdBlock is the records a block holds: 73, so that a block and the
// allocator's 8-byte header fill its 16 KiB size class on 64-bit
// platforms. A replay with few fragments then allocates little: with
// blocks of 256 records (56 KiB, a large object), a new Replayer took
// about 145 us instead of 85 us for a capture of three fragments. The
// memory above the records held is three blocks at most (the one the head
// is in, the one the tail is in, the spare).
const holdBlock = 73

// at returns the i-th record held (0 is the oldest). Precondition: i < n.
func (q *holdQueue) at(i int) *heldRecord {
	j := q.head + i
	return &q.blocks[q.first+j/holdBlock][j%holdBlock]
}

// push adds a record at the end and returns it.
func (q *holdQueue) push() *heldRecord {
	if q.head+q.n == (len(q.blocks)-q.first)*holdBlock {
		b := q.spare
		if b == nil {
			b = make([]heldRecord, holdBlock)
		}
		q.spare = nil
		if q.first > 0 && q.first >= len(q.blocks)/2 {
			k := copy(q.blocks, q.blocks[q.first:])
			clear(q.blocks[k:])
			q.blocks, q.first = q.blocks[:k], 0
			q.moved += k
		}
		q.blocks = append(q.blocks, b)
	}
	q.n++
	return q.at(q.n - 1)
}

// pop drops the oldest record. Precondition: n > 0.
func (q *holdQueue) pop() {
	q.head++
	q.n--
	q.base++
	if q.head == holdBlock {
		q.spare = q.blocks[q.first]
		q.blocks[q.first] = nil
		q.first++
		q.head = 0
	}
}

// New returns a Replayer for cfg.
func New(cfg Config) (*Replayer, error) {
	if cfg.Rules == nil {
		return nil, errors.New("replay: no ruleset")
	}
	r := &Replayer{cfg: cfg}
	if err := checkIfaces(cfg); err != nil {
		return nil, err
	}
	r.initIfaces()
	if cfg.Mode != Stateful {
		r.stateless = engine.NewStateless(r.rs)
	}
	if cfg.Seed == 0 {
		r.cfg.Seed = DefaultSeed
	}
	held, heldBytes := cfg.MaxHeld, cfg.MaxHeldBytes
	if held <= 0 {
		held = DefaultMaxHeld
	}
	if heldBytes <= 0 {
		heldBytes = DefaultMaxHeldBytes
	}
	r.holdLimit = max(1, min(held, heldBytes/HeldRecordSize))
	if cfg.Mode != Stateless {
		r.stateful = engine.NewStatefulTable(r.rs, conntrack.Config{
			Timeouts:   cfg.Rules.Timeouts,
			Limit:      cfg.Rules.LimitStates,
			NoChecksum: cfg.NoChecksum,
			Seed:       r.cfg.Seed,
		})
		r.defrag = defrag.New(defrag.Config{})
	}
	return r, nil
}

// Seed returns conntrack's hash seed.
func (r *Replayer) Seed() uint64 { return r.cfg.Seed }

// Clock returns how often the timestamps went back so far.
func (r *Replayer) Clock() ClockSteps { return r.steps }

// clock returns the time to decide a packet stamped ts at: ts, or the
// latest time seen if ts is earlier (counted as a step back).
func (r *Replayer) clock(ts time.Time) (int64, error) {
	now := tsNanos(ts)
	if !r.started || now >= r.latest {
		r.latest, r.started = now, true
		return now, nil
	}
	if r.cfg.StrictTime {
		return 0, fmt.Errorf("%w (%s, %v before the latest)", ErrTimeBackwards,
			ts.UTC().Format("2006-01-02T15:04:05.000000Z"), time.Duration(r.latest-now))
	}
	r.steps.Back++
	r.steps.Largest = max(r.steps.Largest, time.Duration(r.latest-now))
	return r.latest, nil
}

// Table returns the connection-tracking table (nil in stateless mode).
func (r *Replayer) Table() *conntrack.Table {
	if r.stateful == nil {
		return nil
	}
	return r.stateful.CT
}

// FileError is a capture that could not be read to its end. Index is the
// index of the packet that could not be read; the packets before it were
// replayed.
type FileError struct {
	File  string
	Index int
	Err   error
}

func (e *FileError) Error() string {
	return fmt.Sprintf("%s: packet %d: %v", e.File, e.Index, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// ReplayFile replays one file into sink. Packets are decided in file order;
// a read error after some packets returns a *FileError once the packets
// read so far have reached the sink.
func (r *Replayer) ReplayFile(name string, sink Sink) error {
	src, err := openSource(name)
	if err != nil {
		return err
	}
	defer src.close()
	for i := 0; ; {
		// Read and decode a batch; a read error ends it, after the
		// packets before it are decided. While the connection table is
		// small enough to stay in the caches, prefetching gains nothing
		// and the batch is one packet, decided before the next read, so
		// it need not be copied.
		size := 1
		if r.stateful != nil && r.stateful.CT.PrefetchPays() {
			size = batchSize
		}
		if r.batch != 0 && r.stateful != nil {
			size = r.batch
		}
		n := 0
		var err error
		for n < size {
			var data []byte
			var ci gopacket.CaptureInfo
			var ifname string
			m := &r.meta[n]
			if data, m.link, ifname, ci, err = src.next(); err != nil {
				break
			}
			m.iface = r.ifaceIndex(ifname)
			if size > 1 {
				r.bufs[n] = append(r.bufs[n][:0], data...)
				data = r.bufs[n]
			}
			m.ts, m.wireLen, m.capLen = ci.Timestamp, ci.Length, len(data)
			r.pkts[n].Decode(data, m.link)
			dropBadHeaderSum(&r.pkts[n])
			n++
		}
		if size > 1 {
			r.stateful.PrefetchBatch(&r.cb, r.pkts[:n])
		}
		for j := range n {
			r.inBatch = -1
			if size > 1 {
				r.inBatch = j
			}
			now, terr := r.clock(r.meta[j].ts)
			if terr != nil {
				if ferr := r.flushFragments(sink); ferr != nil {
					return ferr
				}
				return &FileError{File: name, Index: i, Err: terr}
			}
			if err := r.replayPacket(name, i, &r.pkts[j], &r.meta[j], now, sink); err != nil {
				return err
			}
			i++
		}
		if err != nil {
			// Datagrams still incomplete at the end of the file will not
			// be completed: report their fragments now.
			if ferr := r.flushFragments(sink); ferr != nil {
				return ferr
			}
			if err == io.EOF {
				return nil
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("truncated capture: %w", err)
			}
			return &FileError{File: name, Index: i, Err: err}
		}
	}
}

// replayPacket decides one packet at now (the replay's clock) and hands
// its record, and any held records it releases, to sink in file order.
func (r *Replayer) replayPacket(file string, index int, p *packet.Packet, m *packetMeta, now int64, sink Sink) error {
	seq := r.seq
	r.seq++
	// An IPv6 atomic fragment is a whole packet, but the kernel queues it
	// under its id like any fragment (defrag.Atomic): it waits too.
	hold := r.defrag != nil && defrag.Atomic(p)
	if err := r.decide(file, index, p, m, now, hold); err != nil {
		return err
	}
	if r.defrag == nil {
		return sink(&r.rec)
	}
	for _, d := range r.defrag.Expire(now) {
		r.resolve(d.Tokens, engine.FragmentDropped(dropReason(d.Status)))
	}
	if err := r.makeRoom(sink); err != nil {
		return err
	}
	if !r.rec.Fragment && !hold {
		if r.held.n == 0 {
			return sink(&r.rec)
		}
		*r.held.push() = heldRecord{rec: r.rec}
		return r.release(sink)
	}
	if r.held.n == 0 {
		// Packets since the last release went straight to the sink
		// without moving base: this fragment starts the queue.
		r.held.base = seq
	}
	*r.held.push() = heldRecord{rec: r.rec, pending: true, fragID: p.Frag.ID}
	status, whole, tokens := r.defrag.Add(p, seq, now)
	switch status {
	case defrag.Pending:
	case defrag.Complete, defrag.Unreassembled:
		if status == defrag.Complete {
			r.whole.Decode(whole, packet.LinkIP)
		} else {
			// The kernel's IPv6 defragmentation passes the fragment on as
			// it is (dropping the datagram it would have joined, whose
			// tokens these are), and conntrack tracks the fragment.
			r.resolve(tokens, engine.FragmentDropped(reasonUnreassembled))
			tokens = append(tokens[:0], seq)
			r.whole.DecodeUnreassembled(p.Data, m.link)
		}
		p := &r.whole
		var d engine.Decision
		w := r.where(r.rs.Direction(p.Src, p.Dst), m.iface)
		r.stateful.DecideAt(&d, p, w, now)
		r.resolve(tokens, d)
		if r.cfg.Log != nil {
			n, err := r.logDecision(p, &d, w, m.ts, true)
			// The fragment that completed the datagram (or was passed
			// on unreassembled), pushed last.
			r.held.at(r.held.n - 1).rec.Logged = n
			if err != nil {
				return err
			}
		}
	default:
		r.resolve(tokens, engine.FragmentDropped(dropReason(status)))
	}
	return r.release(sink)
}

// reasonUnreassembled is the stateful decision's detail for the fragments
// of a datagram that an IPv6 fragment passed on unreassembled dropped.
const reasonUnreassembled = "datagram dropped: a fragment of it passed on unreassembled"

// dropReason says why reassembly dropped fragments; constant strings only.
func dropReason(s defrag.Status) string {
	switch s {
	case defrag.Duplicate:
		return "duplicate fragment"
	case defrag.Rejected:
		return "fragment rejected"
	case defrag.Overlap:
		return "overlapping fragments"
	case defrag.Invalid:
		return "impossible datagram"
	case defrag.Expired:
		return "incomplete datagram timed out"
	case defrag.Evicted:
		return "datagram evicted (reassembly memory full)"
	case defrag.Unusable:
		return "unusable fragment (cut by the capture)"
	}
	return "dropped"
}

// resolve sets the stateful decision of the held records with these seqs.
func (r *Replayer) resolve(seqs []int, d engine.Decision) {
	q := &r.held
	for _, s := range seqs {
		i := s - q.base
		if i < 0 || i >= q.n {
			continue
		}
		h := q.at(i)
		h.rec.Stateful, h.pending = d, false
	}
}

// release hands the decided records at the head of held to sink.
func (r *Replayer) release(sink Sink) error {
	q := &r.held
	for q.n > 0 && !q.at(0).pending {
		if err := sink(&q.at(0).rec); err != nil {
			return err
		}
		q.pop()
	}
	if q.n == 0 {
		q.base = r.seq
	}
	return nil
}

// makeRoom makes room for one more held record: at the hold limit, it
// gives up the datagram of the oldest pending fragment, which is the first
// record held once the decided ones before it are released, and releases
// the records up to the next pending fragment. Precondition: Expire was
// just called, so every pending fragment's datagram is still in the
// reassembler under its key (see defrag.Reassembler.Discard).
func (r *Replayer) makeRoom(sink Sink) error {
	q := &r.held
	for q.n >= r.holdLimit {
		if h := q.at(0); h.pending {
			dg := defrag.Datagram{V6: h.rec.IPVersion == 6, Src: h.rec.Src, Dst: h.rec.Dst, Proto: h.rec.Proto, ID: h.fragID}
			r.resolve(r.defrag.Discard(dg), engine.FragmentDropped(reasonHoldLimit))
			// Should Discard not find it, it goes alone: the loop must
			// end.
			h.rec.Stateful, h.pending = engine.FragmentDropped(reasonHoldLimit), false
		}
		if err := r.release(sink); err != nil {
			return err
		}
	}
	return nil
}

// flushFragments ends every datagram still being reassembled: its
// fragments are reported as incomplete.
func (r *Replayer) flushFragments(sink Sink) error {
	if r.defrag == nil || r.held.n == 0 {
		return nil
	}
	for _, d := range r.defrag.Expire(math.MaxInt64) {
		r.resolve(d.Tokens, engine.FragmentDropped("incomplete datagram at end of capture"))
	}
	for i := range r.held.n {
		if h := r.held.at(i); h.pending {
			h.rec.Stateful = engine.FragmentDropped("incomplete datagram at end of capture")
			h.pending = false
		}
	}
	return r.release(sink)
}

// dropBadHeaderSum marks an IPv4 packet whose header checksum is wrong as
// malformed: the kernel drops it in ip_rcv, before the first netfilter
// hook, so no filter and no conntrack ever sees it (a live daemon never
// gets one), and it must leave no trace in the replay's connection table
// either. It gets the `set invalid` verdict in both modes. The kernel
// checks the header checksum whatever nf_conntrack_checksum says, and
// Linux computes it in software, so captures taken on the sending host
// carry it right.
func dropBadHeaderSum(p *packet.Packet) {
	if p.Kind != packet.KindOK || p.IPVersion != 4 || len(p.Data) < p.L3Off+p.IPHdrLen {
		return
	}
	if packet.Fold(packet.OnesSum(p.Data[p.L3Off:p.L3Off+p.IPHdrLen], 0)) != 0xffff {
		p.Kind = packet.KindMalformed
	}
}

// decide fills r.rec for one decoded packet, decided at now unless hold
// (a fragment is always held), and logs it
// (Config.Log); only logging fails.
func (r *Replayer) decide(file string, index int, p *packet.Packet, m *packetMeta, now int64, hold bool) error {
	ts := m.ts
	rec := &r.rec
	// The record is reused and set field by field: built whole (a
	// composite literal, 264 bytes made on the stack and then copied with
	// their pointers) it cost ~30 ns a packet, 6% of a replay's profile.
	// The engines zero the decisions they set. TestDecideLeavesNothing
	// checks that nothing of the record before survives.
	rec.File, rec.Index, rec.TS, rec.Len, rec.Kind = file, index, ts, m.wireLen, p.Kind
	if m.wireLen == 0 {
		rec.Len = m.capLen
	}
	rec.SrcPort, rec.DstPort, rec.HasPorts = 0, 0, false
	rec.TCPFlags, rec.ICMPType, rec.ICMPCode = 0, 0, 0
	rec.Dir, rec.HasStateless, rec.HasStateful, rec.Logged = rules.DirUnknown, false, false, 0
	rs := r.rs
	if p.Kind == packet.KindOK {
		rec.IPVersion, rec.Proto = p.IPVersion, p.Proto
		rec.Src, rec.Dst = p.Src, p.Dst
		rec.Fragment = p.Frag.IsFragment
		if p.L4Off != 0 {
			switch p.Proto {
			case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP, packet.ProtoUDPLite:
				rec.SrcPort, rec.DstPort, rec.HasPorts = p.SrcPort, p.DstPort, true
			case packet.ProtoICMP, packet.ProtoICMPv6:
				rec.ICMPType, rec.ICMPCode = p.ICMPType, p.ICMPCode
			}
			if p.Proto == packet.ProtoTCP {
				rec.TCPFlags = p.TCPFlags
			}
		}
		rec.Dir = rs.Direction(p.Src, p.Dst)
	} else {
		rec.IPVersion, rec.Proto = 0, 0
		rec.Src, rec.Dst = netip.Addr{}, netip.Addr{}
		rec.Fragment = false
	}
	w := r.where(rec.Dir, m.iface)
	rec.In, rec.Out = r.ifName(w.In), r.ifName(w.Out)
	if r.stateless != nil {
		r.stateless.DecideAt(&rec.Stateless, p, w)
		rec.HasStateless = true
	} else {
		rec.Stateless = engine.Decision{}
	}
	if r.stateful != nil {
		rec.HasStateful = true
		// Fragments (and held atomic ones) wait for their datagram
		// (replayPacket); the rest are decided now.
		switch {
		case rec.Fragment || hold:
			rec.Stateful = engine.Decision{}
		case r.inBatch >= 0:
			r.stateful.DecideBatch(&rec.Stateful, &r.cb, r.inBatch, w, now)
		default:
			r.stateful.DecideAt(&rec.Stateful, p, w, now)
		}
	} else {
		rec.Stateful = engine.Decision{}
	}
	if r.cfg.Log == nil {
		return nil
	}
	var err error
	switch {
	case r.stateful == nil:
		rec.Logged, err = r.logDecision(p, &rec.Stateless, w, ts, false)
	case !rec.Fragment && !hold:
		rec.Logged, err = r.logDecision(p, &rec.Stateful, w, ts, true)
	}
	return err
}
