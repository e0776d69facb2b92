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
package replay

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/defrag"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
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
}

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
	Proto     uint8
	Src, Dst  netip.Addr
	SrcPort   uint16
	DstPort   uint16
	HasPorts  bool
	TCPFlags  uint8
	ICMPType  uint8
	ICMPCode  uint8
	Fragment  bool
	Dir       rules.Dir

	HasStateless bool
	Stateless    engine.Decision
	HasStateful  bool
	Stateful     engine.Decision
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
	// (Stateful.Prefetch) batchSize at a time, then decided in order, so
	// that the table's cache misses overlap; see conntrack.Table.Prefetch.
	// The reader reuses its buffer, so each packet of a batch is copied
	// into bufs.
	pkts [batchSize]packet.Packet
	// batch, for tests: 0 decides by the table's size (above), 1 never
	// batches, batchSize always does.
	batch int
	bufs  [batchSize][]byte
	meta  [batchSize]packetMeta

	// Fragments: conntrack sees only whole datagrams, so the stateful
	// engine decides a fragmented datagram once it is reassembled and every
	// fragment gets that decision, as in the kernel. Records wait in held,
	// in file order, until the first one is decided; seq numbers packets
	// across files and is the reassembler's token.
	defrag   *defrag.Reassembler
	whole    packet.Packet // the reassembled datagram
	held     []heldRecord
	heldBase int // seq of held[0]
	seq      int

	// The replay's clock: the latest timestamp seen, in nanoseconds, and
	// the steps back from it.
	latest  int64
	started bool
	steps   ClockSteps
}

// batchSize is how many packets replay reads ahead.
const batchSize = 16

// packetMeta is what the capture says about a packet besides its bytes.
type packetMeta struct {
	link    packet.LinkType
	ts      time.Time
	wireLen int // the length on the wire (0: unknown)
	capLen  int // the bytes captured
}

type heldRecord struct {
	rec     Record
	pending bool // the stateful decision is not known yet
}

// New returns a Replayer for cfg.
func New(cfg Config) (*Replayer, error) {
	if cfg.Rules == nil {
		return nil, errors.New("replay: no ruleset")
	}
	r := &Replayer{cfg: cfg}
	if cfg.Mode != Stateful {
		r.stateless = engine.NewStateless(cfg.Rules)
	}
	if cfg.Seed == 0 {
		r.cfg.Seed = DefaultSeed
	}
	if cfg.Mode != Stateless {
		ct := conntrack.New(conntrack.Config{
			Timeouts:   cfg.Rules.Timeouts,
			Limit:      cfg.Rules.LimitStates,
			NoChecksum: cfg.NoChecksum,
			Seed:       r.cfg.Seed,
		})
		r.stateful = engine.NewStateful(cfg.Rules, ct)
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
			m := &r.meta[n]
			if data, m.link, ci, err = src.next(); err != nil {
				break
			}
			if size > 1 {
				r.bufs[n] = append(r.bufs[n][:0], data...)
				data = r.bufs[n]
			}
			m.ts, m.wireLen, m.capLen = ci.Timestamp, ci.Length, len(data)
			r.pkts[n].Decode(data, m.link)
			n++
		}
		if size > 1 {
			r.stateful.Prefetch(r.pkts[:n])
		}
		for j := range n {
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
	r.decide(file, index, p, m, now)
	if r.defrag == nil {
		return sink(&r.rec)
	}
	for _, d := range r.defrag.Expire(now) {
		r.resolve(d.Tokens, engine.FragmentDropped(dropReason(d.Status)))
	}
	if !r.rec.Fragment {
		if len(r.held) == 0 {
			return sink(&r.rec)
		}
		r.held = append(r.held, heldRecord{rec: r.rec})
		return r.release(sink)
	}
	if len(r.held) == 0 {
		// Packets since the last release went straight to the sink
		// without moving heldBase: this fragment starts the queue.
		r.heldBase = seq
	}
	r.held = append(r.held, heldRecord{rec: r.rec, pending: true})
	status, whole, tokens := r.defrag.Add(p, seq, now)
	switch status {
	case defrag.Pending:
	case defrag.Complete:
		p := &r.whole
		p.Decode(whole, packet.LinkIP)
		d := r.stateful.Decide(p, r.cfg.Rules.Direction(p.Src, p.Dst), now)
		r.resolve(tokens, d)
	default:
		r.resolve(tokens, engine.FragmentDropped(dropReason(status)))
	}
	return r.release(sink)
}

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
	for _, s := range seqs {
		i := s - r.heldBase
		if i < 0 || i >= len(r.held) {
			continue
		}
		h := &r.held[i]
		h.rec.Stateful, h.pending = d, false
	}
}

// release hands the decided records at the head of held to sink.
func (r *Replayer) release(sink Sink) error {
	n := 0
	for n < len(r.held) && !r.held[n].pending {
		if err := sink(&r.held[n].rec); err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		r.held = append(r.held[:0], r.held[n:]...)
		r.heldBase += n
	}
	if len(r.held) == 0 {
		r.heldBase = r.seq
	}
	return nil
}

// flushFragments ends every datagram still being reassembled: its
// fragments are reported as incomplete.
func (r *Replayer) flushFragments(sink Sink) error {
	if r.defrag == nil || len(r.held) == 0 {
		return nil
	}
	for _, d := range r.defrag.Expire(math.MaxInt64) {
		r.resolve(d.Tokens, engine.FragmentDropped("incomplete datagram at end of capture"))
	}
	for i := range r.held {
		if r.held[i].pending {
			r.held[i].rec.Stateful = engine.FragmentDropped("incomplete datagram at end of capture")
			r.held[i].pending = false
		}
	}
	return r.release(sink)
}

// decide fills r.rec for one decoded packet, decided at now.
func (r *Replayer) decide(file string, index int, p *packet.Packet, m *packetMeta, now int64) {
	ts := m.ts
	rec := &r.rec
	*rec = Record{File: file, Index: index, TS: ts, Len: m.wireLen, Kind: p.Kind}
	if m.wireLen == 0 {
		rec.Len = m.capLen
	}
	rs := r.cfg.Rules
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
	}
	if r.stateless != nil {
		r.stateless.DecideInto(&rec.Stateless, p, rec.Dir)
		rec.HasStateless = true
	}
	if r.stateful != nil {
		rec.HasStateful = true
		// Fragments wait for their datagram (replayPacket); the rest are
		// decided now.
		if !rec.Fragment {
			r.stateful.DecideInto(&rec.Stateful, p, rec.Dir, now)
		}
	}
}
