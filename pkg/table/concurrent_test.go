package table

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

// pair returns two entries that a writer always adds and deletes
// together, in one call.
func pair(i int) (a, b netip.Prefix) {
	a = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
	b = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0x01, 0x98, 0, 0x18, 14: byte(i >> 8), 15: byte(i)}), 128)
	return a, b
}

// Readers run while one writer adds, deletes, replaces and flushes pairs.
// Every version a reader loads holds both of a pair or neither (no torn
// state), and once Add returns both are visible to every reader. Run it
// with -race: the versions are shared without locks.
func TestConcurrentReadersSeeWholeVersions(t *testing.T) {
	const n = 300
	tb := mustNew(t, Config{Name: "c"})
	var stop atomic.Bool
	var added atomic.Int64 // pairs [0, added) are in the table, until the deletes start
	var wg sync.WaitGroup
	var torn, lost atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := (i*7 + r) % n
				a, b := pair(k)
				v := tb.load() // one version, the way a lookup sees it
				if v.Contains(a.Addr()) != v.Contains(b.Addr()) {
					torn.Add(1)
				}
				// Add returned for pairs below added: the public
				// lookup must see them (no deletes in this phase).
				if int64(k) < added.Load() && !tb.Contains(a.Addr()) {
					lost.Add(1)
				}
			}
		})
	}
	for i := range n {
		a, b := pair(i)
		if _, err := tb.Add([]netip.Prefix{a, b}); err != nil {
			t.Fatal(err)
		}
		added.Store(int64(i + 1))
		// Visible here, in the writer, and (checked above) in readers.
		if !tb.Contains(a.Addr()) || !tb.Contains(b.Addr()) {
			t.Fatalf("pair %d not visible after Add returned", i)
		}
	}
	added.Store(0) // the delete phase: readers check only for torn versions
	for i := 0; i < n; i += 2 {
		a, b := pair(i)
		if _, err := tb.Delete([]netip.Prefix{a, b}); err != nil {
			t.Fatal(err)
		}
	}
	var all []netip.Prefix
	for i := range n {
		a, b := pair(i)
		all = append(all, a, b)
	}
	for range 20 {
		if err := tb.Replace(all); err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Delete(all[:n]); err != nil { // the clone path
			t.Fatal(err)
		}
		if _, err := tb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if torn.Load() != 0 || lost.Load() != 0 {
		t.Errorf("%d lookups saw a torn version, %d missed an entry Add had published", torn.Load(), lost.Load())
	}
}

// A batch Add to a large table must become visible, as a whole, to a
// reader that is looking up all the while. How soon is for
// BenchmarkAddWhileReading to say; this test only checks that it does,
// with no timing in it.
func TestAddBatchVisibleToReaders(t *testing.T) {
	size := 100_000
	if testing.Short() || raceEnabled {
		size = 10_000
	}
	tb, err := New(Config{}, genMix(size, 11))
	if err != nil {
		t.Fatal(err)
	}
	batch := genMix(10_000, 12)
	probe := batch[len(batch)-1].Addr()
	if tb.Contains(probe) {
		t.Fatalf("%s is already in the table; pick another seed", probe)
	}
	seen := make(chan struct{})
	go func() {
		for !tb.Contains(probe) {
		}
		// The reader saw the last entry of the batch, so it sees all.
		for _, p := range batch {
			if !tb.Contains(p.Addr()) {
				t.Errorf("%s not visible with the rest of its batch", p)
				break
			}
		}
		close(seen)
	}()
	if _, err := tb.Add(batch); err != nil {
		t.Fatal(err)
	}
	<-seen
}
