//go:build linux

package oracle

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/internal/pkttest"
)

// stamped is a raw IP packet and its time from the capture's start.
type stamped struct {
	at   time.Duration
	data []byte
}

// writeRaw writes a raw-IP pcap (link type 101).
func writeRaw(t *testing.T, pkts []stamped) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: base.Add(p.at), CaptureLength: len(p.data), Length: len(p.data)}
		if err := w.WritePacket(ci, p.data); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func runOpt(t *testing.T, path string, opt Options) *Result {
	t.Helper()
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, path, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestKeepAddresses(t *testing.T) {
	in := writeRaw(t, []stamped{{0, pkttest.MustBytes(t, "udp 198.18.7.1:1000 > 198.18.7.2:2000 len=10")}})
	res := runOpt(t, in, Options{KeepAddresses: true})
	expect(t, res.Labels, 0, "new")

	out := writeRaw(t, []stamped{{0, pkttest.MustBytes(t, "udp 10.0.0.1:1000 > 198.18.7.2:2000 len=10")}})
	requireRoot(t)
	if _, err := Run(context.Background(), out, Options{KeepAddresses: true}); err == nil || !strings.Contains(err.Error(), "outside the test ranges") {
		t.Errorf("KeepAddresses with 10.0.0.1: err = %v, want a refusal", err)
	}
}

// TestTimeoutsAndGaps: with the UDP timeout lowered to 1 s and the 2.5 s
// gap waited out, the answer finds the query's entry gone and opens its
// own; back to back, it is the reply.
func TestTimeoutsAndGaps(t *testing.T) {
	path := writeRaw(t, []stamped{
		{0, pkttest.MustBytes(t, "udp 198.18.7.1:1000 > 198.18.7.2:53 len=10")},
		{2500 * time.Millisecond, pkttest.MustBytes(t, "udp 198.18.7.2:53 > 198.18.7.1:1000 len=20")},
	})
	fast := runOpt(t, path, Options{})
	if l := fast.Labels[1]; l.CT != "established" || l.Dir != "reply" {
		t.Errorf("back to back: answer %+v, want established/reply", l)
	}
	start := time.Now()
	slow := runOpt(t, path, Options{Sysctls: map[string]string{"nf_conntrack_udp_timeout": "1"}, GapScale: 1})
	if l := slow.Labels[1]; l.CT != "new" || l.Dir != "original" {
		t.Errorf("after the gap: answer %+v, want new/original (the query's entry expired)", l)
	}
	if d := time.Since(start); d < 2500*time.Millisecond {
		t.Errorf("the run took %v: the gap was not waited out", d)
	}
	if slow.MaxLate > 500*time.Millisecond {
		t.Errorf("MaxLate %v", slow.MaxLate)
	}
	found := false
	for _, s := range slow.Sysctls {
		found = found || s == "nf_conntrack_udp_timeout = 1"
	}
	if !found {
		t.Errorf("the namespace's sysctls do not show the timeout set: %v", slow.Sysctls)
	}
	if len(slow.Warnings) != 0 {
		t.Errorf("warnings with the gaps honoured: %v", slow.Warnings)
	}
}

// frag6 returns an IPv6 fragment from 198.18-range addresses: ext is the
// fragmentable part's first header type (the fragment header's next
// header), data the fragment's bytes.
func frag6(id uint32, off int, more bool, next uint8, data []byte) []byte {
	src, dst := netip.MustParseAddr("fd00:198:18::7:1").As16(), netip.MustParseAddr("fd00:198:18::7:2").As16()
	b := make([]byte, 48, 48+len(data))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(data)))
	b[6], b[7] = 44, 64
	copy(b[8:], src[:])
	copy(b[24:], dst[:])
	b[40] = next
	fo := uint16(off)
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(b[42:], fo)
	binary.BigEndian.PutUint32(b[44:], id)
	return append(b, data...)
}

// TestFragmentsPassedThrough: the two IPv6 fragments nf_ct_frag6_gather
// lets through unreassembled, which conntrack labels themselves.
func TestFragmentsPassedThrough(t *testing.T) {
	// A 16-byte destination-options header (a skippable option and
	// PadN), of which the first fragment holds 8 bytes; protocol 253.
	dst := []byte{253, 1, 0x1e, 6, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	payload := make([]byte, 13)
	path := writeRaw(t, []stamped{
		// A non-last fragment of 13 bytes, protocol 253.
		{0, frag6(1, 0, true, 253, payload)},
		// A first fragment holding half the header chain.
		{time.Millisecond, frag6(2, 0, true, 60, dst[:8])},
	})
	res := runOpt(t, path, Options{KeepAddresses: true})
	for i, why := range []string{"not a multiple of 8", "ipv6frag_thdr_truncated"} {
		l := res.Labels[i]
		if l.CT != "new" && l.CT != "established" || !strings.Contains(l.Note, "passed through") || !strings.Contains(l.Note, why) {
			t.Errorf("#%d: %+v, want a label and a note that it passed through (%s)", i, l, why)
		}
	}
}

func TestThdrTruncated(t *testing.T) {
	dst := []byte{6, 1, 0x1e, 6, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}
	tcp := make([]byte, 20)
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"half the destination options", frag6(1, 0, true, 60, dst[:8]), true},
		{"options, no TCP", frag6(1, 0, true, 60, dst), true},
		{"options, 8 bytes of TCP", frag6(1, 0, true, 60, append(append([]byte(nil), dst...), tcp[:8]...)), true},
		{"options and TCP", frag6(1, 0, true, 60, append(append([]byte(nil), dst...), tcp...)), false},
		{"UDP header", frag6(1, 0, true, 17, make([]byte, 8)), false},
		{"7 bytes of UDP", frag6(1, 0, true, 17, make([]byte, 7)), true},
		{"not the first fragment", frag6(1, 8, true, 60, dst[:8]), false},
		{"no next header", frag6(1, 0, true, 59, nil), false},
	} {
		if got := thdrTruncated(c.b); got != c.want {
			t.Errorf("%s: thdrTruncated = %v, want %v", c.name, got, c.want)
		}
	}
}
