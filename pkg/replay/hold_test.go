package replay_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/replay"
)

// Records behind a fragment whose datagram is still pending are held back
// until it resolves, and a hostile capture chooses when it times out. These
// tests replay such captures, generated here: raw IP (no link header),
// UDP to 10.0.0.2:53 (or fd00::2), which holdRules passes.

const holdRules = "pass proto udp to 10.0.0.2 port 53\npass proto udp to fd00::2 port 53\n"

var holdT0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	reasonHoldLimit = "defrag: incomplete datagram: replay's hold limit reached"
	reasonTimedOut  = "defrag: incomplete datagram timed out"
	reasonEnd       = "defrag: incomplete datagram at end of capture"
)

// udpQuery is the packet a flood repeats: 10.0.0.1:1000 > 10.0.0.2:53.
func udpQuery(t testing.TB) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 53}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, udp, gopacket.Payload("q")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fragmented returns the fragments of a UDP datagram from src (an IPv4 or
// IPv6 address, to 10.0.0.2 or fd00::2, port 53) with this id: its UDP
// header and 16 bytes of data, cut in three pieces of 8 bytes.
func fragmented(t testing.TB, src string, id uint32) [][]byte {
	t.Helper()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var ip4 *layers.IPv4
	var ip6 *layers.IPv6
	udp := &layers.UDP{SrcPort: 2000, DstPort: 53}
	var err error
	if s := net.ParseIP(src); s.To4() != nil {
		ip4 = &layers.IPv4{Version: 4, TTL: 64, Id: uint16(id), Protocol: layers.IPProtocolUDP, SrcIP: s.To4(), DstIP: net.IPv4(10, 0, 0, 2)}
		err = udp.SetNetworkLayerForChecksum(ip4)
	} else {
		ip6 = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, SrcIP: s, DstIP: net.ParseIP("fd00::2")}
		err = udp.SetNetworkLayerForChecksum(ip6)
	}
	if err != nil {
		t.Fatal(err)
	}
	l4 := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(l4, opts, udp, gopacket.Payload("a query, 3 parts")); err != nil {
		t.Fatal(err)
	}
	var frags [][]byte
	for off := 0; off < len(l4.Bytes()); off += 8 {
		piece := gopacket.Payload(l4.Bytes()[off : off+8])
		more := off+8 < len(l4.Bytes())
		buf := gopacket.NewSerializeBuffer()
		if ip4 != nil {
			ip := *ip4
			ip.FragOffset = uint16(off / 8)
			if more {
				ip.Flags = layers.IPv4MoreFragments
			}
			err = gopacket.SerializeLayers(buf, opts, &ip, piece)
		} else {
			fh := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: uint16(off / 8), MoreFragments: more, Identification: id}
			err = gopacket.SerializeLayers(buf, opts, ip6, fh, piece)
		}
		if err != nil {
			t.Fatal(err)
		}
		frags = append(frags, append([]byte(nil), buf.Bytes()...))
	}
	return frags
}

// pcapWriter writes a raw-IP capture into dir.
type pcapWriter struct {
	f    *os.File
	bw   *bufio.Writer
	w    *pcapgo.Writer
	name string
}

func newPcap(t testing.TB, dir, name string) *pcapWriter {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	return &pcapWriter{f, bw, w, path}
}

func (p *pcapWriter) add(t testing.TB, ts time.Time, data []byte) {
	if err := p.w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, data); err != nil {
		t.Fatal(err)
	}
}

func (p *pcapWriter) close(t testing.TB) string {
	t.Helper()
	if err := p.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := p.f.Close(); err != nil {
		t.Fatal(err)
	}
	return p.name
}

// holdCapture writes the findings' captures into dir: the first fragments
// of datagrams that never complete, 1 ms apart, then n queries. Unless
// spread, the queries are all stamped 1 s after the start, within the
// datagrams' timeout; spread, they span 31 s from there, so that the
// datagrams time out one by one while nearly all the queries are held
// behind them.
func holdCapture(t testing.TB, dir string, datagrams, n int, spread bool) string {
	w := newPcap(t, dir, fmt.Sprintf("hold-%d-%d-%v.pcap", datagrams, n, spread))
	for i := range datagrams {
		w.add(t, holdT0.Add(time.Duration(i)*time.Millisecond), fragmented(t, "10.0.0.3", uint32(i))[0])
	}
	q := udpQuery(t)
	start, step := holdT0.Add(time.Second), time.Duration(0)
	if spread {
		step = 31 * time.Second / time.Duration(n)
	}
	for i := range n {
		w.add(t, start.Add(time.Duration(i)*step), q)
	}
	return w.close(t)
}

// inOrder returns a sink that checks every record comes out once, in file
// order, and calls check on each.
func inOrder(t testing.TB, next *int, check func(*replay.Record)) replay.Sink {
	return func(r *replay.Record) error {
		if r.Index != *next {
			t.Fatalf("record with index %d, want %d: not in file order, or not exactly once", r.Index, *next)
		}
		*next++
		check(r)
		return nil
	}
}

// TestIncompleteFragmentHoldsBoundedMemory: one fragment whose datagram
// never completes, then 200,000 packets within its timeout. Every record
// was held until the end of the capture (263 MB allocated, the heap grew
// by 158 MB, and 54 MB were still in use at the end); with the hold limit
// at 4096 records, the fragment is given up when the limit is reached and
// the rest flow (1.1 MB allocated).
func TestIncompleteFragmentHoldsBoundedMemory(t *testing.T) {
	const n = 200_000
	name := holdCapture(t, t.TempDir(), 1, n, false)
	rp, err := replay.New(replay.Config{Rules: parseRules(t, holdRules), MaxHeld: 4096})
	if err != nil {
		t.Fatal(err)
	}
	var m0, m, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	peak := m0.HeapInuse
	next := 0
	err = rp.ReplayFile(name, inOrder(t, &next, func(r *replay.Record) {
		if r.Index == 0 {
			if !r.Fragment || r.Stateful.Verdict != engine.Block || r.Stateful.Reason() != reasonHoldLimit {
				t.Errorf("#0: fragment %v, stateful %v %q; want the fragment blocked, %q", r.Fragment, r.Stateful.Verdict, r.Stateful.Reason(), reasonHoldLimit)
			}
		} else if r.Fragment || r.Stateful.Verdict != engine.Pass || r.DstPort != 53 {
			t.Fatalf("#%d: fragment %v, port %d, stateful %v %s; want the query, passed", r.Index, r.Fragment, r.DstPort, r.Stateful.Verdict, r.Stateful.Reason())
		}
		if r.Index%(1<<15) == 0 {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
	}))
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatal(err)
	}
	if next != n+1 {
		t.Fatalf("%d records for %d packets", next, n+1)
	}
	runtime.GC()
	runtime.ReadMemStats(&m)
	runtime.KeepAlive(rp)
	alloc, grew, kept := m1.TotalAlloc-m0.TotalAlloc, int64(peak)-int64(m0.HeapInuse), int64(m.HeapInuse)-int64(m0.HeapInuse)
	t.Logf("allocated %.1f MB, heap in use grew by %.1f MB at most, %.1f MB at the end", float64(alloc)/1e6, float64(grew)/1e6, float64(kept)/1e6)
	// The held records take 4096 * 224 bytes = 0.9 MB; all of them would
	// be 67 MB.
	if alloc > 16<<20 {
		t.Errorf("allocated %d bytes, want under 16 MiB", alloc)
	}
	if grew > 8<<20 || kept > 8<<20 {
		t.Errorf("heap in use grew by %d bytes, %d at the end; want under 8 MiB", grew, kept)
	}
}

// TestIncompleteDatagramsReleasedInLinearTime: 1,000 datagrams that never
// complete, then 100,000 packets, held behind them until they time out one
// by one. Each time the oldest timed out, the records after it were copied
// down the queue: 96 million records copied (1,000 times most of the
// queue, 21 GB), and the queue, a slice grown by append, allocated 110 MB.
// The queue's blocks copy no record and hold each once (27 MB).
func TestIncompleteDatagramsReleasedInLinearTime(t *testing.T) {
	const datagrams, n = 1000, 100_000
	name := holdCapture(t, t.TempDir(), datagrams, n, true)
	rp, err := replay.New(replay.Config{Rules: parseRules(t, holdRules)})
	if err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	next := 0
	err = rp.ReplayFile(name, inOrder(t, &next, func(r *replay.Record) {
		if r.Index < datagrams {
			if r.Stateful.Reason() != reasonTimedOut {
				t.Fatalf("#%d: stateful %v %q, want %q", r.Index, r.Stateful.Verdict, r.Stateful.Reason(), reasonTimedOut)
			}
		} else if r.Stateful.Verdict != engine.Pass {
			t.Fatalf("#%d: stateful %v %s, want pass", r.Index, r.Stateful.Verdict, r.Stateful.Reason())
		}
	}))
	runtime.ReadMemStats(&m1)
	if err != nil {
		t.Fatal(err)
	}
	if next != datagrams+n {
		t.Fatalf("%d records for %d packets", next, datagrams+n)
	}
	moved, alloc := replay.HeldMoves(rp), m1.TotalAlloc-m0.TotalAlloc
	t.Logf("%d elements copied in the queue, %.1f MB allocated, for %d records", moved, float64(alloc)/1e6, next)
	if moved > 3*next {
		t.Errorf("%d elements copied in the queue for %d records: not linear", moved, next)
	}
	// At most every record held at once, and 16 MiB for the rest.
	if ceiling := uint64(next*replay.HeldRecordSize + 16<<20); alloc > ceiling {
		t.Errorf("allocated %d bytes for %d records, want under %d", alloc, next, ceiling)
	}
}

// TestHoldLimitGivesUpOldestDatagram: at the hold limit (6 records, or the
// bytes of 6), the oldest pending datagram is given up: its fragments come
// out blocked with the hold-limit reason, in file order, reassembly forgets
// it (its last fragment, later, starts a datagram of its own, which never
// completes), and the packets after it flow on. A datagram whose fragments
// fit within the limit still completes.
func TestHoldLimitGivesUpOldestDatagram(t *testing.T) {
	for _, fam := range []struct{ name, a, b string }{
		{"IPv4", "10.0.0.3", "10.0.0.4"},
		{"IPv6", "fd00::3", "fd00::4"},
	} {
		for _, limit := range []struct {
			name string
			cfg  replay.Config
		}{
			{"records", replay.Config{MaxHeld: 6}},
			{"bytes", replay.Config{MaxHeldBytes: 7*replay.HeldRecordSize - 1}},
		} {
			t.Run(fam.name+"/"+limit.name, func(t *testing.T) {
				a := fragmented(t, fam.a, 7) // three fragments
				b := fragmented(t, fam.b, 8)
				q := udpQuery(t)
				// b1 finds 6 records held: a is given up. b's fragments
				// span 6 records: it completes.
				pkts := [][]byte{a[0], a[1], b[0], q, q, q, b[1], b[2], q, a[2], q}
				want := []string{
					reasonHoldLimit, reasonHoldLimit, "pass",
					"pass", "pass", "pass", "pass", "pass", "pass",
					reasonEnd, "pass",
				}
				w := newPcap(t, t.TempDir(), "limit.pcap")
				for i, p := range pkts {
					w.add(t, holdT0.Add(time.Duration(i)*time.Millisecond), p)
				}
				name := w.close(t)
				cfg := limit.cfg
				cfg.Rules = parseRules(t, holdRules)
				recs := replayAll(t, cfg, name)
				if len(recs) != len(pkts) {
					t.Fatalf("%d records for %d packets", len(recs), len(pkts))
				}
				for i, r := range recs {
					if r.Index != i {
						t.Fatalf("record %d has index %d: not in file order", i, r.Index)
					}
					got := r.Stateful.Reason()
					if r.Stateful.Verdict == engine.Pass {
						got = "pass"
					}
					if got != want[i] {
						t.Errorf("#%d: stateful %v %s ct %s, want %s", i, r.Stateful.Verdict, r.Stateful.Reason(), r.Stateful.Label(), want[i])
					}
					if r.Stateful.Cause == engine.CauseFragment && (r.Stateful.Verdict != engine.Block || r.Stateful.Label() != "invalid") {
						t.Errorf("#%d: dropped fragment %v, ct %s; want block, invalid", i, r.Stateful.Verdict, r.Stateful.Label())
					}
				}
			})
		}
	}
}

// FuzzReplayHoldLimit replays arbitrary captures, seeded with fragments
// around the hold limit, with a limit of 1 to 16 records: whatever the
// fragments and the limit, every record comes out once, in file order, and
// a read error comes after exactly the records before it.
func FuzzReplayHoldLimit(f *testing.F) {
	dir := f.TempDir()
	a, b, c := fragmented(f, "10.0.0.3", 7), fragmented(f, "fd00::4", 8), fragmented(f, "10.0.0.5", 9)
	q := udpQuery(f)
	w := newPcap(f, dir, "seed.pcap")
	for i, p := range [][]byte{a[0], a[1], b[0], q, c[2], q, b[1], c[0], b[2], q, a[2], c[1], q} {
		w.add(f, holdT0.Add(time.Duration(i)*time.Second), p)
	}
	seed, err := os.ReadFile(w.close(f))
	if err != nil {
		f.Fatal(err)
	}
	for _, limit := range []uint8{0, 2, 5, 15} {
		f.Add(seed, limit)
	}
	rs := parseRules(f, holdRules)
	f.Fuzz(func(t *testing.T, data []byte, limit uint8) {
		path := filepath.Join(dir, "in.pcap")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		rp, err := replay.New(replay.Config{Rules: rs, MaxHeld: int(limit%16) + 1})
		if err != nil {
			t.Fatal(err)
		}
		next := 0
		err = rp.ReplayFile(path, inOrder(t, &next, func(*replay.Record) {}))
		var fe *replay.FileError
		if errors.As(err, &fe) && fe.Index != next {
			t.Fatalf("error at packet %d after %d records: %v", fe.Index, next, err)
		}
	})
}

// BenchmarkReplayHeldFragments replays the two findings' captures with
// the default limits, and the flood alone for comparison: time and bytes
// allocated per replay.
func BenchmarkReplayHeldFragments(b *testing.B) {
	rs := parseRules(b, holdRules)
	dir := b.TempDir()
	for _, bc := range []struct {
		name         string
		datagrams, n int
		spread       bool
	}{
		{"flood-2M", 0, 2_000_000, false},
		{"1-incomplete-then-2M", 1, 2_000_000, false},
		{"1000-incomplete-then-1M", 1000, 1_000_000, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			name := holdCapture(b, dir, bc.datagrams, bc.n, bc.spread)
			b.ReportAllocs()
			for b.Loop() {
				rp, err := replay.New(replay.Config{Rules: rs})
				if err != nil {
					b.Fatal(err)
				}
				if err := rp.ReplayFile(name, func(*replay.Record) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
