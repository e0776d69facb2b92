// Package defrag reassembles IPv4 and IPv6 datagrams from their fragments
// for offline replay, with the policy of the Linux kernel's defragmentation
// in front of conntrack, so that a replay judges fragments as the kernel
// would: conntrack there only ever sees whole datagrams.
//
// The policy, read from net/ipv4/ip_fragment.c (ip_frag_queue,
// ip_frag_reasm), net/ipv6/netfilter/nf_conntrack_reasm.c
// (nf_ct_frag6_queue, nf_ct_frag6_reasm) and net/ipv4/inet_fragment.c
// (inet_frag_queue_insert):
//
//   - A datagram is keyed by IP version, source, destination and id, plus
//     the protocol for IPv4.
//   - Fragments that arrive in order at the end of what was received extend
//     a "run" of contiguous data. A fragment that lies entirely inside one
//     run is a duplicate and is dropped alone, whatever its bytes (the first
//     copy wins). Any other overlap with received data drops the whole
//     datagram (RFC 5722 for IPv6; Linux does the same for IPv4 since 4.19).
//     A fragment spanning two runs that arrived out of order is therefore an
//     overlap even if every byte of it was received: runs are not merged.
//   - A fragment that contradicts the datagram's length (a second, different
//     last fragment; data past the last fragment's end) or carries no data
//     drops the whole IPv4 datagram, but only itself for IPv6. A non-last
//     IPv6 fragment whose length is not a multiple of 8 drops the whole
//     datagram and is itself passed on unreassembled (nf_ct_frag6_queue's
//     -EPROTO, which nf_ct_frag6_gather turns into 0, NF_ACCEPT for
//     ipv6_defrag); for IPv4 its extra bytes are cut off.
//   - A reassembled datagram over 65535 bytes, or fragments mixing Not-ECT
//     with ECN-capable codepoints (RFC 3168 5.3), drop the whole datagram.
//   - The timer starts with the first fragment and is not refreshed: 30 s
//     for IPv4 (net.ipv4.ipfrag_time), 60 s for IPv6
//     (net.netfilter.nf_conntrack_frag6_timeout). A datagram that completes
//     is forgotten; a later duplicate of one of its fragments starts a new
//     datagram that will time out.
//   - An IPv6 atomic fragment (offset 0, M clear) is queued like any
//     other (see Atomic): alone it completes at once, but it is the last
//     fragment of a datagram pending under its id, which it overlaps.
//   - IPv6 passes on unreassembled, before looking its datagram up, a first
//     fragment that does not hold the start of the transport header
//     (ipv6frag_thdr_truncated; RFC 8200 4.5 says to discard it, and the
//     kernel's comment says "drop", but nf_ct_frag6_gather returns 0).
//     Conntrack then tracks the fragment as the packet it is
//     (packet.DecodeUnreassembled).
//
// Known differences: the kernel refuses new fragments above
// ipfrag_high_thresh (4 MiB) while this package evicts the oldest
// datagram; IPv4's ipfrag_max_dist (reinitialising a datagram after 64
// fragments from the same source went by) is not modelled.
package defrag

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// Status is what Add did with a fragment, or why Expire dropped a datagram.
type Status uint8

const (
	// Pending: the fragment is stored; its datagram is not complete yet.
	Pending Status = iota
	// Complete: the fragment completed its datagram, which Add returns.
	Complete
	// Duplicate: the fragment lies inside data already received and was
	// dropped alone.
	Duplicate
	// Rejected: the fragment was dropped alone for contradicting its
	// datagram (IPv6 only, see the package comment).
	Rejected
	// Overlap: the fragment overlapped received data; the whole datagram
	// was dropped.
	Overlap
	// Invalid: the fragment made the datagram impossible (IPv4 length
	// contradictions, over 65535 bytes, an ECN mix, ...); the whole
	// datagram was dropped.
	Invalid
	// Expired: the datagram was not complete within its time limit.
	Expired
	// Evicted: the datagram was dropped to keep within Config's bounds.
	Evicted
	// Unusable: Add was given a packet that is not a fragment it can use
	// (not KindOK, not a fragment, or fragment bytes cut by the capture).
	// Nothing changed.
	Unusable
	// Unreassembled: the IPv6 fragment is passed on as it is, not
	// reassembled, as the kernel's defragmentation does with a first
	// fragment without the whole header chain and a non-last fragment whose
	// length is not a multiple of 8 (see the package comment); the latter
	// drops its datagram. The caller tracks the fragment itself.
	Unreassembled
)

func (s Status) String() string {
	switch s {
	case Pending:
		return "pending"
	case Complete:
		return "complete"
	case Duplicate:
		return "duplicate"
	case Rejected:
		return "rejected"
	case Overlap:
		return "overlap"
	case Invalid:
		return "invalid"
	case Expired:
		return "expired"
	case Evicted:
		return "evicted"
	case Unusable:
		return "unusable"
	case Unreassembled:
		return "unreassembled"
	}
	return "status?"
}

// Config bounds a Reassembler. The zero value of a field means its default.
type Config struct {
	IPv4Timeout time.Duration // default 30 s, the kernel's ipfrag_time
	IPv6Timeout time.Duration // default 60 s, the kernel's nf_conntrack_frag6_timeout
	// MaxDatagrams bounds the datagrams pending at once; default 4096.
	MaxDatagrams int
	// MaxBytes bounds the bytes held for pending datagrams (their buffers'
	// capacity); default 4 MiB, the kernel's ipfrag_high_thresh.
	MaxBytes int
}

func (c Config) withDefaults() Config {
	if c.IPv4Timeout <= 0 {
		c.IPv4Timeout = 30 * time.Second
	}
	if c.IPv6Timeout <= 0 {
		c.IPv6Timeout = 60 * time.Second
	}
	if c.MaxDatagrams <= 0 {
		c.MaxDatagrams = 4096
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 4 << 20
	}
	return c
}

// Dropped is a datagram that Expire reports: timed out, or evicted.
type Dropped struct {
	Status Status // Expired or Evicted
	Tokens []int  // the tokens of its fragments, in arrival order
}

// Reassembler collects fragments into datagrams. The zero value is ready
// to use with the default Config; New sets another. It is not safe for
// concurrent use. Time is what the caller says it is (now, in nanoseconds,
// typically the capture timestamp): it should not go backwards, and if it
// does, datagrams still expire in the order they were created.
type Reassembler struct {
	cfg     Config
	pending map[key]*datagram
	// byAge lists the pending datagrams of each version (0: IPv4, 1: IPv6)
	// oldest first; with one timeout per version, the oldest is also the
	// first to expire.
	byAge [2]struct{ head, tail *datagram }
	bytes int

	out     []byte // the last reassembled datagram
	tokens  []int  // the tokens Add returned last
	dropped []Dropped
	spare   []Dropped // the slice Expire returned last, reused after
	free    []*datagram
}

// New returns a Reassembler with cfg (zero fields take their defaults).
func New(cfg Config) *Reassembler {
	r := &Reassembler{}
	r.init(cfg)
	return r
}

func (r *Reassembler) init(cfg Config) {
	r.cfg = cfg.withDefaults()
	r.pending = make(map[key]*datagram)
}

// key identifies a datagram. Addresses are [16]byte (IPv4 mapped into
// IPv6) so that the key is comparable, pointer-free and cheap to hash.
type key struct {
	src, dst [16]byte
	id       uint32
	proto    packet.Proto // IPv4 only: IPv6 fragments of one datagram may differ here
	v6       bool
}

// run is a stretch of contiguous data received in order (the kernel's
// "frag run"); runs are sorted by start and never touch each other's
// bytes.
type run struct{ start, end int }

type datagram struct {
	key        key
	deadline   int64
	qlen       int // the datagram's length so far (final once lastIn)
	meat       int // bytes received
	firstIn    bool
	lastIn     bool
	runs       []run
	tokens     []int
	payload    []byte // the fragmentable part, by offset
	header     []byte // from the first fragment: IPv4 header; IPv6 header and extension headers before the fragment header
	nhOff      int    // IPv6: the byte of header that announced the fragment header
	nextHeader uint8  // IPv6: the first fragment's next header after the fragment header
	ecn        uint8  // OR of 1<<ECN codepoint over the fragments, as the kernel's ip_frag_ecn
	maxSize    int    // IPv4: largest fragment, and largest with DF set (the kernel's DF rule)
	maxDFSize  int
	held       int // bytes counted against MaxBytes
	prev, next *datagram
}

// Add offers one decoded packet with p.Frag.IsFragment set, or an IPv6
// atomic fragment (see Atomic). token is the
// caller's handle for the packet (a packet index, say); Add reports
// datagrams by their fragments' tokens.
//
// It returns the fragment's Status and:
//   - Complete: the reassembled datagram, starting at its IP header (decode
//     it with packet.LinkIP), and the tokens of the fragments it was made
//     of, in arrival order;
//   - Overlap, Invalid, Evicted: no bytes, and the tokens of the dropped
//     datagram's fragments, this one included;
//   - Duplicate, Rejected, Unusable: no bytes, and this token alone;
//   - Unreassembled: no bytes, and the tokens of the fragments of the
//     datagram it dropped (none for a first fragment without the header
//     chain), this one not included: the caller tracks this fragment as a
//     packet of its own;
//   - Pending: nothing.
//
// The bytes and tokens belong to the Reassembler and are valid until the
// next call to Add or Discard. Datagrams that time out or are evicted
// meanwhile are reported by Expire.
func (r *Reassembler) Add(p *packet.Packet, token int, now int64) (Status, []byte, []int) {
	if r.pending == nil {
		r.init(Config{})
	}
	if p.Kind != packet.KindOK || !p.Frag.IsFragment && !Atomic(p) || p.L3Off+p.IPLen > len(p.Data) {
		return Unusable, nil, r.one(token)
	}
	v6 := p.IPVersion == 6
	ip := p.Data[p.L3Off : p.L3Off+p.IPLen]
	var data []byte
	if v6 {
		data = ip[p.Frag.HdrOff+8:]
		if p.Frag.Offset == 0 && firstFragmentTruncated(p) {
			// The kernel passes it on before it looks the datagram up:
			// any datagram it belongs to is left alone.
			r.tokens = r.tokens[:0]
			return Unreassembled, nil, r.tokens
		}
	} else {
		data = ip[p.IPHdrLen:]
	}

	k := key{src: p.Src.As16(), dst: p.Dst.As16(), id: p.Frag.ID, v6: v6}
	if !v6 {
		k.proto = p.Proto
	}
	d := r.pending[k]
	if d != nil && now >= d.deadline {
		r.drop(d, Expired)
		d = nil
	}
	if d == nil {
		// Created before the fragment is checked, as the kernel's
		// inet_frag_find does: a rejected IPv6 fragment still starts the
		// timer of an empty datagram.
		if len(r.pending) >= r.cfg.MaxDatagrams {
			r.drop(r.oldest(nil), Evicted)
		}
		d = r.create(k, now)
	}

	offset := int(p.Frag.Offset)
	end := offset + len(data)
	if v6 && end > 65535 {
		return Rejected, nil, r.one(token)
	}
	// The length checks of ip_frag_queue and nf_ct_frag6_queue, in their
	// order; they update qlen and lastIn before the later checks can fail.
	if !p.Frag.More {
		if end < d.qlen || (d.lastIn && end != d.qlen) {
			return r.reject(d, token, v6)
		}
		d.lastIn = true
		d.qlen = end
	} else {
		if end&7 != 0 {
			if v6 {
				// -EPROTO: the datagram is dropped, the fragment
				// passed on.
				_, _, tokens := r.kill(d, -1, Invalid)
				return Unreassembled, nil, tokens
			}
			end &^= 7
		}
		if end > d.qlen {
			if d.lastIn {
				return r.reject(d, token, v6)
			}
			d.qlen = end
		}
	}
	if end == offset {
		return r.reject(d, token, v6)
	}
	data = data[:end-offset]

	switch d.insert(offset, end) {
	case insertDup:
		return Duplicate, nil, r.one(token)
	case insertOverlap:
		return r.kill(d, token, Overlap)
	}
	if !r.store(d, offset, data, token) {
		return r.kill(d, token, Evicted)
	}
	d.meat += len(data)
	d.ecn |= 1 << ecnOf(ip, v6)
	if offset == 0 {
		d.firstIn = true
		if v6 {
			d.header = append(d.header[:0], ip[:p.Frag.HdrOff]...)
			d.nhOff = int(p.Frag.NHOff)
			d.nextHeader = ip[p.Frag.HdrOff]
		} else {
			d.header = append(d.header[:0], ip[:p.IPHdrLen]...)
		}
	}
	if !v6 {
		size := len(data) + p.IPHdrLen
		d.maxSize = max(d.maxSize, size)
		if p.Frag.DontFrag {
			d.maxDFSize = max(d.maxDFSize, size)
		}
	}
	if !d.firstIn || !d.lastIn || d.meat != d.qlen {
		return Pending, nil, nil
	}
	return r.reassemble(d)
}

// Atomic reports whether p is an IPv6 atomic fragment: a fragment header
// with offset 0 and M clear, which pkg/packet decodes as a whole packet
// (IsFragment false). The kernel's IPv6 defragmentation in front of
// conntrack does not tell it from other fragments: nf_ct_frag6_gather looks
// its datagram up by the fragment header's id (fq_find) and queues it with
// nf_ct_frag6_queue. Alone it completes a datagram at once (the same
// packet, without the fragment header), but it meets the fragments held
// under its id: as the last fragment, [0, length) overlaps (or duplicates)
// any of them, and the whole datagram is dropped with it (RFC 5722).
// Replay must give Add every atomic fragment, as it gives every fragment.
//
// With several atomic fragment headers the kernel queues the packet under
// the first one's id; pkg/packet keeps the last one's.
func Atomic(p *packet.Packet) bool {
	return p.Kind == packet.KindOK && p.IPVersion == 6 && !p.Frag.IsFragment &&
		p.Frag.HdrOff != 0 && p.Frag.Offset == 0 && !p.Frag.More
}

// firstFragmentTruncated is the kernel's ipv6frag_thdr_truncated: the first
// fragment must hold its extension headers (a header that says it runs
// past the packet decodes with IPHdrLen at the packet's end), then 20 bytes
// of a TCP header, 8 of UDP or ICMPv6, and 1 byte of anything else. No
// next header is never truncated: ipv6_skip_exthdr fails on it, and a
// failed walk makes ipv6frag_thdr_truncated false.
func firstFragmentTruncated(p *packet.Packet) bool {
	need := 1
	switch p.Proto {
	case packet.ProtoTCP:
		need = 20
	case packet.ProtoUDP, packet.ProtoICMPv6:
		need = 8
	case packet.ProtoIPv6NoNext:
		return false
	}
	return p.IPLen-p.IPHdrLen < need
}

// ecnOf is the ECN codepoint of the fragment's IP header.
func ecnOf(ip []byte, v6 bool) uint8 {
	if v6 {
		return ip[1] >> 4 & 3
	}
	return ip[1] & 3
}

type insertResult uint8

const (
	insertOK insertResult = iota
	insertDup
	insertOverlap
)

// insert places [off, end) among the runs as inet_frag_queue_insert does:
// at the tail it extends the last run or starts a new one; elsewhere it is
// a duplicate when inside one run, an overlap when it touches received data
// otherwise, and a run of its own when it touches nothing.
func (d *datagram) insert(off, end int) insertResult {
	n := len(d.runs)
	if n == 0 {
		d.runs = append(d.runs, run{off, end})
		return insertOK
	}
	if tail := d.runs[n-1].end; tail < end {
		switch {
		case off < tail:
			return insertOverlap
		case off == tail:
			d.runs[n-1].end = end
		default:
			d.runs = append(d.runs, run{off, end})
		}
		return insertOK
	}
	// The first run that ends after off.
	i, j := 0, n
	for i < j {
		h := int(uint(i+j) >> 1)
		if d.runs[h].end > off {
			j = h
		} else {
			i = h + 1
		}
	}
	if i < n && d.runs[i].start < end {
		if off >= d.runs[i].start && end <= d.runs[i].end {
			return insertDup
		}
		return insertOverlap
	}
	d.runs = append(d.runs, run{})
	copy(d.runs[i+1:], d.runs[i:])
	d.runs[i] = run{off, end}
	return insertOK
}

// store copies a fragment's bytes into the datagram, evicting older
// datagrams if the bytes would exceed MaxBytes. It reports false when even
// that is not enough.
func (r *Reassembler) store(d *datagram, offset int, data []byte, token int) bool {
	end := offset + len(data)
	if end > len(d.payload) {
		grown := cap(d.payload)
		if end > grown {
			// Grow to the next 4 KiB so that in-order fragments do not
			// copy the buffer each time.
			grown = (end + 4095) &^ 4095
		}
		need := grown - cap(d.payload)
		for r.bytes+need > r.cfg.MaxBytes {
			o := r.oldest(d)
			if o == nil {
				return false
			}
			r.drop(o, Evicted)
		}
		if grown > cap(d.payload) {
			buf := make([]byte, end, grown)
			copy(buf, d.payload)
			d.payload = buf
		} else {
			d.payload = d.payload[:end]
		}
		r.bytes += need
		d.held += need
	}
	copy(d.payload[offset:], data)
	d.tokens = append(d.tokens, token)
	return true
}

// reassemble builds the datagram in r.out and forgets it.
func (r *Reassembler) reassemble(d *datagram) (Status, []byte, []int) {
	ecn, bad := ecnCombined(d.ecn)
	total := len(d.header) + d.qlen
	limit := 65535 // the IPv4 total length field
	if d.key.v6 {
		limit += 40 // the IPv6 payload length field leaves out the fixed header
	}
	if bad || total > limit {
		return r.kill(d, -1, Invalid)
	}
	r.out = append(append(r.out[:0], d.header...), d.payload[:d.qlen]...)
	h := r.out
	if d.key.v6 {
		h[d.nhOff] = d.nextHeader
		binary.BigEndian.PutUint16(h[4:], uint16(total-40))
		h[1] |= ecn << 4
	} else {
		binary.BigEndian.PutUint16(h[2:], uint16(total))
		var fo uint16
		if d.maxDFSize == d.maxSize {
			fo = 0x4000 // DF, when the largest fragment had it
		}
		binary.BigEndian.PutUint16(h[6:], fo)
		h[1] |= ecn
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], ipv4Checksum(h[:len(d.header)]))
	}
	r.tokens = append(r.tokens[:0], d.tokens...)
	r.forget(d)
	return Complete, r.out, r.tokens
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ecnCombined applies RFC 3168 5.3 as the kernel's ip_frag_ecn_table: Not-ECT
// mixed with any ECN-capable codepoint drops the datagram; CE on any
// fragment with ECT on the others marks the whole datagram CE.
func ecnCombined(bits uint8) (ecn uint8, drop bool) {
	const notECT, ect1, ect0, ce = 1, 2, 4, 8
	if bits&notECT != 0 && bits != notECT {
		return 0, true
	}
	if bits&ce != 0 && bits&(ect0|ect1) != 0 {
		return 3, false
	}
	return 0, false
}

func ipv4Checksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// reject drops the fragment alone (IPv6) or its whole datagram (IPv4): the
// kernel's "goto err" in nf_ct_frag6_queue against "goto discard_qp" in
// ip_frag_queue.
func (r *Reassembler) reject(d *datagram, token int, v6 bool) (Status, []byte, []int) {
	if v6 {
		return Rejected, nil, r.one(token)
	}
	return r.kill(d, token, Invalid)
}

// kill drops the datagram d because of the fragment token (-1: none) and
// returns the tokens of all its fragments.
func (r *Reassembler) kill(d *datagram, token int, s Status) (Status, []byte, []int) {
	r.tokens = append(r.tokens[:0], d.tokens...)
	if token >= 0 {
		r.tokens = append(r.tokens, token)
	}
	r.forget(d)
	return s, nil, r.tokens
}

func (r *Reassembler) one(token int) []int {
	r.tokens = append(r.tokens[:0], token)
	return r.tokens
}

// drop removes d for a reason no fragment is to blame for (timeout, room),
// keeping its tokens for Expire to report.
func (r *Reassembler) drop(d *datagram, s Status) {
	if len(d.tokens) > 0 {
		r.dropped = append(r.dropped, Dropped{Status: s, Tokens: d.tokens})
		d.tokens = nil // given away; forget must not recycle it
	}
	r.forget(d)
}

// Expire drops the datagrams whose time is up at now and returns them,
// after the datagrams Add evicted or found expired since the last call,
// oldest first. Datagrams none of whose fragments were kept are not
// reported. The result is valid until the next call to Expire; call it
// regularly (once per packet is cheap: it looks only at the oldest
// datagram of each IP version), or evicted datagrams pile up.
func (r *Reassembler) Expire(now int64) []Dropped {
	for v := range r.byAge {
		for d := r.byAge[v].head; d != nil && now >= d.deadline; d = r.byAge[v].head {
			r.drop(d, Expired)
		}
	}
	out := r.dropped
	r.dropped, r.spare = r.spare[:0], out
	return out
}

// Datagram names a datagram by what its fragments share, the fields of
// the key (see the package comment).
type Datagram struct {
	V6       bool
	Src, Dst netip.Addr
	Proto    packet.Proto // IPv4 only: ignored for IPv6, as in the key
	ID       uint32
}

// Discard drops the pending datagram dg for a reason of the caller's (a
// replay gives up a datagram it has held too many records for) and returns
// the tokens of its fragments in arrival order (none if dg is not
// pending). A later fragment of dg starts a new datagram. The tokens are
// valid until the next call to Add or Discard; Expire does not report
// them.
//
// Datagrams that Add dropped since the last Expire are no longer pending:
// call Discard after Expire, or a datagram that Add started since under
// the same key is the one discarded.
func (r *Reassembler) Discard(dg Datagram) []int {
	k := key{src: dg.Src.As16(), dst: dg.Dst.As16(), id: dg.ID, v6: dg.V6}
	if !dg.V6 {
		k.proto = dg.Proto
	}
	d := r.pending[k]
	if d == nil {
		return nil
	}
	r.tokens = append(r.tokens[:0], d.tokens...)
	r.forget(d)
	return r.tokens
}

// Len returns the number of datagrams pending.
func (r *Reassembler) Len() int { return len(r.pending) }

// Bytes returns the bytes held for pending datagrams, as counted against
// Config.MaxBytes.
func (r *Reassembler) Bytes() int { return r.bytes }

func (r *Reassembler) create(k key, now int64) *datagram {
	var d *datagram
	if n := len(r.free); n > 0 {
		d, r.free = r.free[n-1], r.free[:n-1]
	} else {
		d = &datagram{}
	}
	d.key = k
	timeout := r.cfg.IPv4Timeout
	if k.v6 {
		timeout = r.cfg.IPv6Timeout
	}
	d.deadline = now + int64(timeout)
	r.pending[k] = d
	l := &r.byAge[boolInt(k.v6)]
	d.prev, d.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = d
	} else {
		l.head = d
	}
	l.tail = d
	if d.held > 0 { // a recycled buffer: count it, or let it go if there is no room
		if r.bytes+d.held > r.cfg.MaxBytes {
			d.payload, d.held = nil, 0
		}
		r.bytes += d.held
	}
	return d
}

// oldest returns the oldest pending datagram other than not, nil if none.
func (r *Reassembler) oldest(not *datagram) *datagram {
	var best *datagram
	for v := range r.byAge {
		d := r.byAge[v].head
		if d != nil && d == not {
			d = d.next
		}
		if d != nil && (best == nil || d.deadline-r.timeout(d) < best.deadline-r.timeout(best)) {
			best = d
		}
	}
	return best
}

func (r *Reassembler) timeout(d *datagram) int64 {
	if d.key.v6 {
		return int64(r.cfg.IPv6Timeout)
	}
	return int64(r.cfg.IPv4Timeout)
}

// forget removes d from the table and recycles it.
func (r *Reassembler) forget(d *datagram) {
	delete(r.pending, d.key)
	l := &r.byAge[boolInt(d.key.v6)]
	if d.prev != nil {
		d.prev.next = d.next
	} else {
		l.head = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else {
		l.tail = d.prev
	}
	r.bytes -= d.held
	// Keep a few datagrams with their buffers: fragments tend to come in
	// bursts of the same size. A kept buffer is counted again on reuse.
	if len(r.free) < 8 {
		*d = datagram{runs: d.runs[:0], tokens: d.tokens[:0], payload: d.payload[:0], header: d.header[:0], held: d.held}
		r.free = append(r.free, d)
	}
}
