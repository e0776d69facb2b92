package replay_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/replay"
)

// v6Frag is an IPv6 packet from fd00:198:18::<from> to fd00:198:18::<to>
// with a fragment header (id 5, offset off, M more) whose next header is
// nh, then body.
func v6Frag(from, to byte, nh byte, off int, more bool, body []byte) []byte {
	b := make([]byte, 48, 48+len(body))
	b[0], b[6], b[7] = 0x60, 44, 64
	copy(b[8:], []byte{0xfd, 0, 1, 0x98, 0, 0x18, 15: from})
	copy(b[24:], []byte{0xfd, 0, 1, 0x98, 0, 0x18, 15: to})
	fo := uint16(off)
	if more {
		fo |= 1
	}
	b[40] = nh
	binary.BigEndian.PutUint16(b[42:], fo)
	binary.BigEndian.PutUint32(b[44:], 5)
	b = append(b, body...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// TestIPv6FragmentsPassedOnUnreassembledAreTracked: the fragments the
// kernel's IPv6 defragmentation passes on (nf_ct_frag6_gather returns 0)
// are tracked as packets, as the kernel's conntrack does: an unaligned
// non-last fragment of protocol 253 starts a generic connection (new) and
// drops the fragment held for its datagram; a first fragment whose
// destination options header runs past it is the reply (established) and
// leaves the datagram it would have joined pending; the later fragment of
// that datagram then gets no connection (ipv6_get_l4proto finds no protocol
// in a fragment with an offset): invalid, as it never completes.
func TestIPv6FragmentsPassedOnUnreassembledAreTracked(t *testing.T) {
	at := time.Unix(1700000000, 0)
	var pkts []rawPacket
	add := func(b []byte) {
		pkts = append(pkts, rawPacket{gopacket.CaptureInfo{Timestamp: at.Add(time.Duration(len(pkts)) * time.Millisecond), CaptureLength: len(b), Length: len(b)}, b})
	}
	add(v6Frag(1, 2, 253, 64, true, make([]byte, 16)))                // #0 held, then dropped by #1
	add(v6Frag(1, 2, 253, 0, true, make([]byte, 67)))                 // #1 unaligned: passed on, new
	add(v6Frag(2, 1, 253, 8, true, make([]byte, 8)))                  // #2 held, never completes
	add(v6Frag(2, 1, 60, 0, true, []byte{253, 91, 0, 0, 0, 0, 0, 0})) // #3 chain past the fragment: passed on, reply
	name := writePcap(t, t.TempDir(), "unreassembled.pcap", layers.LinkTypeRaw, pkts)
	recs := replayAll(t, replay.Config{Rules: parseRules(t, "set default pass\nset invalid pass\n")}, name)
	want := []struct {
		label string
		reply bool
		cause engine.Cause
	}{
		{"invalid", false, engine.CauseFragment},
		{"new", false, 0},
		{"invalid", false, engine.CauseFragment},
		{"established", true, 0},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		d := recs[i].Stateful
		if d.Label() != w.label || d.CT.Reply != w.reply || w.cause != 0 && d.Cause != w.cause {
			t.Errorf("#%d: %s (reply %v, %s), want %s (reply %v)", i, d.Label(), d.CT.Reply, d.Reason(), w.label, w.reply)
		}
	}
}
