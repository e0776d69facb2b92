package conntrack

import (
	"fmt"
	"strings"
	"time"

	"github.com/statewall/statewall/pkg/conntrack/tcpstate"
	"github.com/statewall/statewall/pkg/packet"
)

// EntryInfo is a copy of one entry, for listings (`statewall conntrack`,
// like conntrack -L) and tests.
type EntryInfo struct {
	Original, Reply Key
	// TCPState is the TCP state (TCP entries only).
	TCPState tcpstate.State
	// SCTPState is the SCTP state (SCTP entries only).
	SCTPState SCTPState
	SeenReply bool
	Assured   bool
	// Timeout is the time left before the entry expires.
	Timeout time.Duration
	// Packets and Bytes by direction: [0] original, [1] reply. Bytes count
	// whole IP datagrams. Packet counts wrap at 2^32.
	Packets [2]uint64
	Bytes   [2]uint64
	// Mark is the caller's byte (Result.Mark at Commit).
	Mark uint8
	// FromPeer: the entry was installed or last changed by a state-sync
	// peer (Install, Remove), and no packet of this node has touched it
	// since.
	FromPeer bool
}

func (e *entry) info(now int64) EntryInfo {
	in := EntryInfo{
		Original:  e.key,
		Reply:     e.key.Reply(),
		SeenReply: e.seenReply(),
		Assured:   e.assured(),
		Timeout:   time.Duration(e.expires - now),
		Packets:   [2]uint64{uint64(e.packets[0]), uint64(e.packets[1])},
		Bytes:     e.bytes,
		Mark:      e.mark,
		FromPeer:  e.flags&flagPeer != 0,
	}
	switch e.key.proto {
	case packet.ProtoTCP:
		// Other entries keep something else there (streamTS, sctp).
		in.TCPState = e.tcp.State
	case packet.ProtoSCTP:
		in.SCTPState = e.sctp().state
	}
	return in
}

// Proto is the IP protocol number.
func (e EntryInfo) Proto() packet.Proto { return e.Original.proto }

// State is the state name conntrack -L shows: the TCP or SCTP state, ""
// for other protocols.
func (e EntryInfo) State() string {
	switch e.Original.proto {
	case packet.ProtoTCP:
		return e.TCPState.String()
	case packet.ProtoSCTP:
		return e.SCTPState.String()
	}
	return ""
}

// listName is the protocol's name in conntrack -L's listing, which the
// listing copies: the protocols conntrack tracks by name, as the kernel
// spells them ("icmpv6", where the rules language and packet.Proto say
// "icmp6"), and "unknown" for what the generic tracker handles.
func listName(p packet.Proto) string {
	switch p {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoUDPLite, packet.ProtoICMP, packet.ProtoSCTP, packet.ProtoGRE:
		return p.String()
	case packet.ProtoICMPv6:
		return "icmpv6"
	}
	return "unknown"
}

// String renders the entry as conntrack -L does (with accounting on):
//
//	udp      17 29 src=198.18.0.1 dst=198.18.0.2 sport=5353 dport=53 packets=1 bytes=60 [UNREPLIED] src=198.18.0.2 dst=198.18.0.1 sport=53 dport=5353 packets=0 bytes=0
//
// Protocols the generic tracker handles are called "unknown", as there.
func (e EntryInfo) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %d %d ", listName(e.Original.proto), e.Original.proto, int64(e.Timeout/time.Second))
	if s := e.State(); s != "" {
		b.WriteString(s)
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%v packets=%d bytes=%d ", e.Original, e.Packets[0], e.Bytes[0])
	if !e.SeenReply {
		b.WriteString("[UNREPLIED] ")
	}
	fmt.Fprintf(&b, "%v packets=%d bytes=%d", e.Reply, e.Packets[1], e.Bytes[1])
	if e.Assured {
		b.WriteString(" [ASSURED]")
	}
	return b.String()
}

// Walk calls fn with a copy of every live entry (alive at now, or at the
// table's clock if that is later) until fn returns false.
// It copies one shard at a time under that shard's lock and calls fn with
// no lock held, so fn may use the table; entries that change meanwhile
// appear as they were when their shard was copied. Entries are in no
// particular order. Walk allocates; it is not for the packet path.
func (t *Table) Walk(now int64, fn func(e EntryInfo) bool) {
	now = t.clock(now)
	var buf []EntryInfo
	for i := range t.shards {
		s := &t.shards[i]
		buf = buf[:0]
		s.mu.Lock()
		for _, sl := range s.slots {
			if sl == 0 {
				continue
			}
			if e := s.at(sl&refMask - 1); !e.expired(now) {
				buf = append(buf, e.info(now))
			}
		}
		s.mu.Unlock()
		for _, e := range buf {
			if !fn(e) {
				return
			}
		}
	}
}

// Delete removes every live entry for which match returns true, as
// conntrack -D does, and returns how many it removed. match is called
// with the entry's shard locked: it must not call the table. A removed
// entry's next packet is tracked as new. Delete takes each shard's lock
// in turn; it is not for the packet path: each entry it looks at is
// copied to the heap for match (one allocation per live entry).
func (t *Table) Delete(now int64, match func(e *EntryInfo) bool) int {
	now = t.clock(now)
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for pos := uint32(0); pos < uint32(len(s.slots)); {
			sl := s.slots[pos]
			if sl == 0 {
				pos++
				continue
			}
			e := s.at(sl&refMask - 1)
			info := e.info(now)
			if e.expired(now) || !match(&info) {
				pos++
				continue
			}
			// removeSlot may move a later slot into pos: look at pos
			// again.
			s.remove(pos)
			s.st.deleted.Add(1)
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// Kill removes the entry p belongs to, if there is one, and reports
// whether it did. It is Delete for one known connection, at the cost of a
// lookup.
func (t *Table) Kill(p *packet.Packet, now int64) bool {
	var k Key
	packetKey(&k, p)
	h := t.hash.sum(&k)
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	pos, _, _, ok := s.find(&k, h)
	if ok {
		s.remove(pos)
		s.st.deleted.Add(1)
	}
	return ok
}

// Get returns the entry that tuple k (in either direction) belongs to, as
// conntrack -G does.
func (t *Table) Get(k Key, now int64) (EntryInfo, bool) {
	now = t.clock(now)
	h := t.hash.sum(&k)
	s := t.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, idx, _, ok := s.find(&k, h)
	if !ok || s.at(idx).expired(now) {
		return EntryInfo{}, false
	}
	return s.at(idx).info(now), true
}
