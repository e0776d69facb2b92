package conntrack

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/packet"
)

// randomPackets is a mix of what Prefetch may be handed: connections'
// first packets and replies over a few hundred flows of every protocol,
// plus packets Track refuses (undecoded, fragments).
func randomPackets(r *rand.Rand, n int) []packet.Packet {
	tmpl := []string{cSyn, sSynAck, cAck, cData, sData, dnsQuery, dnsAnswer,
		"icmp 198.18.0.1 > 198.18.0.2 type=8 id=7", "icmp 198.18.0.2 > 198.18.0.1 type=0 id=7",
		"icmp 198.18.0.9 > 198.18.0.1 type=3 code=3 [udp 198.18.0.1:5353 > 198.18.0.2:53]",
		"gre 198.18.0.1 > 198.18.0.2"}
	ps := make([]packet.Packet, n)
	for i := range ps {
		p := *pkt(tmpl[r.IntN(len(tmpl))])
		// Vary the client (198.18.1.x) so that there are many flows.
		c := netip.AddrFrom4([4]byte{198, 18, 1, byte(r.IntN(200))})
		if p.Src == netip.MustParseAddr("198.18.0.1") {
			p.Src = c
		} else if p.Dst == netip.MustParseAddr("198.18.0.1") {
			p.Dst = c
		}
		switch r.IntN(40) {
		case 0:
			p.Kind = packet.KindMalformed
		case 1:
			p.Frag.IsFragment = true
		}
		ps[i] = p
	}
	return ps
}

// TestPrefetchChangesNothing: the same packets through two tables with the
// same seed, one announced with Prefetch in batches, get the same results
// and leave the same counters: Prefetch is only a hint.
func TestPrefetchChangesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ps := randomPackets(r, 5000)
	cfg := Config{Seed: 3, Limit: 300, NoChecksum: true}
	plain, hinted := New(cfg), New(cfg)
	now := int64(0)
	for i := 0; i < len(ps); i += 7 {
		batch := ps[i:min(i+7, len(ps))]
		hinted.prefetchAll(batch) // the table is small: bypass PrefetchPays
		for j := range batch {
			now += int64(50 * time.Millisecond)
			a := plain.Track(&batch[j], now)
			b := hinted.Track(&batch[j], now)
			if a != b {
				t.Fatalf("packet %d: %+v without Prefetch, %+v with it", i+j, a, b)
			}
			plain.Commit(&batch[j], &a, now)
			hinted.Commit(&batch[j], &b, now)
		}
	}
	if a, b := plain.Stats(), hinted.Stats(); a != b {
		t.Fatalf("stats differ:\n%+v\n%+v", a, b)
	}
	if plain.Stats().Inserted == 0 || plain.Stats().Evicted+plain.Stats().Expired == 0 {
		t.Fatalf("the test did not insert and reap entries: %+v", plain.Stats())
	}
}

// TestPrefetchConcurrent runs Prefetch against a table that grows (new
// chunks, index doubling), shrinks (Sweep compacts) and reaps, from other
// goroutines: under -race it shows that Prefetch reads nothing the writers
// do not publish for it.
func TestPrefetchConcurrent(t *testing.T) {
	tb := New(Config{Seed: 5, Limit: 1 << 16, Shards: 2, NoChecksum: true})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(7, 8))
		ps := randomPackets(r, 256)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tb.prefetchAll(ps)
		}
	}()
	p := pkt(dnsQuery)
	for round := range 4 {
		now := int64(round) * int64(time.Hour)
		for j := range 20000 {
			p.Src = netip.AddrFrom4([4]byte{198, 18, byte(j >> 8), byte(j)})
			r := tb.Track(p, now)
			tb.Commit(p, &r, now)
		}
		tb.Sweep(now + int64(time.Hour)) // everything expired: reap and compact
	}
	close(stop)
	wg.Wait()
	if st := tb.Stats(); st.Inserted != 80000 || st.Entries != 0 {
		t.Fatalf("stats %+v, want 80000 inserted and none left", st)
	}
}

func TestPrefetchNoAllocs(t *testing.T) {
	tb := New(Config{Seed: 5})
	ps := randomPackets(rand.New(rand.NewPCG(1, 1)), 40)
	for i := range ps {
		r := tb.Track(&ps[i], 0)
		tb.Commit(&ps[i], &r, 0)
	}
	if n := testing.AllocsPerRun(100, func() { tb.Prefetch(ps); tb.prefetchAll(ps) }); n != 0 {
		t.Errorf("Prefetch: %v allocations", n)
	}
}

// TestPrefetchPays: Prefetch stays out of the way of a table that fits in
// the caches and starts once it outgrows them.
func TestPrefetchPays(t *testing.T) {
	tb := New(Config{Seed: 5, Limit: 2 * prefetchMinEntries, NoChecksum: true})
	p := pkt(dnsQuery)
	for j := range prefetchMinEntries {
		if tb.PrefetchPays() {
			t.Fatalf("pays at %d entries", j)
		}
		p.Src = netip.AddrFrom4([4]byte{198, 18, byte(j >> 8), byte(j)})
		r := tb.Track(p, 0)
		if !tb.Commit(p, &r, 0) {
			t.Fatal("commit refused")
		}
	}
	if !tb.PrefetchPays() {
		t.Fatalf("does not pay at %d entries", tb.Len())
	}
}

// TestTrackIntoReusedResult: TrackInto into one Result reused for every
// packet, as the engine's hot path may, gives what Track gives on a twin
// table: nothing of the previous packet's result survives (the trackers
// set only the fields they mean, on a Result TrackInto zeroes).
func TestTrackIntoReusedResult(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ps := randomPackets(r, 5000)
	cfg := Config{Seed: 3, Limit: 300, NoChecksum: true}
	fresh, reused := New(cfg), New(cfg)
	var got Result
	now := int64(0)
	for i := range ps {
		now += int64(50 * time.Millisecond)
		want := fresh.Track(&ps[i], now)
		reused.TrackInto(&got, &ps[i], now)
		if got != want {
			t.Fatalf("packet %d: TrackInto %+v, Track %+v", i, got, want)
		}
		if want.Label == LabelNew && i%3 != 0 {
			okF, okR := fresh.Commit(&ps[i], &want, now), reused.Commit(&ps[i], &got, now)
			if okF != okR {
				t.Fatalf("packet %d: Commit %v after Track, %v after TrackInto", i, okF, okR)
			}
		}
	}
	if fresh.Len() != reused.Len() {
		t.Errorf("%d entries after Track, %d after TrackInto", fresh.Len(), reused.Len())
	}
}

// TestBatchChangesNothing: the same packets through two tables with the
// same seed, one tracked with TrackInto, the other announced in batches
// (PrefetchBatch, of varying sizes) and tracked with TrackBatchInto, get
// the same results and leave the same counters, whether Prefetch pays or
// not: the batch's tuples are the ones Track computes.
func TestBatchChangesNothing(t *testing.T) {
	for _, limit := range []int{300, 1 << 16} {
		r := rand.New(rand.NewPCG(1, 2))
		ps := randomPackets(r, 20000)
		cfg := Config{Seed: 3, Limit: limit, NoChecksum: true}
		plain, batched := New(cfg), New(cfg)
		var b Batch
		var got Result
		now := int64(0)
		for i := 0; i < len(ps); {
			batch := ps[i:min(i+1+r.IntN(BatchSize+4), len(ps))]
			batched.PrefetchBatch(&b, batch)
			n := min(len(batch), BatchSize)
			if limit > 300 {
				batched.prefetch(batch[:n], &b) // as if the table were large
			}
			for j := range n {
				now += int64(time.Millisecond)
				want := plain.Track(&batch[j], now)
				batched.TrackBatchInto(&got, &b, j, now)
				if got != want {
					t.Fatalf("limit %d, packet %d: %+v tracked alone, %+v in a batch", limit, i+j, want, got)
				}
				plain.Commit(&batch[j], &want, now)
				batched.Commit(b.Packet(j), &got, now)
			}
			i += n
		}
		if a, b := plain.Stats(), batched.Stats(); a != b {
			t.Fatalf("limit %d: stats differ:\n%+v\n%+v", limit, a, b)
		}
	}
}

func TestBatchNoAllocs(t *testing.T) {
	tb := New(Config{Seed: 5})
	ps := randomPackets(rand.New(rand.NewPCG(1, 1)), BatchSize)
	var b Batch
	var r Result
	if n := testing.AllocsPerRun(100, func() {
		tb.PrefetchBatch(&b, ps)
		for i := range ps {
			tb.TrackBatchInto(&r, &b, i, 0)
		}
	}); n != 0 {
		t.Errorf("PrefetchBatch and TrackBatchInto: %v allocations", n)
	}
}
