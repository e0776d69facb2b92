package replay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/statewall/statewall/bench/trafficgen"
	"github.com/statewall/statewall/pkg/rules"
)

// TestBatchingChangesNothing replays generated traffic whose connection
// table outgrows the caches (so replay starts batching and prefetching
// part way through) three ways: never batched, always batched, and as
// replay decides. Every record must be the same.
func TestBatchingChangesNothing(t *testing.T) {
	g, err := trafficgen.New(trafficgen.Config{Seed: 3, Flows: 20000})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gen.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := trafficgen.WritePcap(f, g, 120000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rs, err := rules.ParseFile("../../bench/server.rules")
	if err != nil {
		t.Fatal(err)
	}
	run := func(batch int) ([]Record, *Replayer) {
		r, err := New(Config{Rules: rs, Mode: Compare})
		if err != nil {
			t.Fatal(err)
		}
		r.batch = batch
		var recs []Record
		if err := r.ReplayFile(path, func(rec *Record) error {
			recs = append(recs, *rec)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return recs, r
	}
	never, _ := run(1)
	always, _ := run(batchSize)
	adaptive, r := run(0)
	if !r.stateful.CT.PrefetchPays() {
		t.Fatalf("the table ended at %d entries: too small to test batching", r.stateful.CT.Len())
	}
	if len(never) != 120000 || len(always) != len(never) || len(adaptive) != len(never) {
		t.Fatalf("records: %d, %d, %d", len(never), len(always), len(adaptive))
	}
	established := 0
	for i := range never {
		if always[i] != never[i] || adaptive[i] != never[i] {
			t.Fatalf("packet %d: never batched %+v\nalways %+v\nadaptive %+v", i, never[i], always[i], adaptive[i])
		}
		if never[i].Stateful.Label() == "established" {
			established++
		}
	}
	if established < len(never)/2 {
		t.Fatalf("only %d of %d packets established: the traffic is not what the test needs", established, len(never))
	}
}

// TestBatchedReplayNoAllocs: the batched path (a classic pcap read by
// pcapReader, packets prefetched and decided in batches) allocates
// nothing per packet, in every mode.
func TestBatchedReplayNoAllocs(t *testing.T) {
	write := func(n int) string {
		g, err := trafficgen.New(trafficgen.Config{Seed: 3, Flows: 500})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "gen.pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := trafficgen.WritePcap(f, g, n); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	short, long := write(1000), write(21000)
	rs, err := rules.ParseFile("../../bench/server.rules")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Mode{Compare, Stateless, Stateful} {
		r, err := New(Config{Rules: rs, Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		r.batch = batchSize
		allocs := func(f string) float64 {
			return testing.AllocsPerRun(5, func() {
				if err := r.ReplayFile(f, func(*Record) error { return nil }); err != nil {
					t.Fatal(err)
				}
			})
		}
		a, b := allocs(short), allocs(long)
		t.Logf("%v: %v allocations for 1000 packets, %v for 21000", mode, a, b)
		if perPacket := (b - a) / 20000; perPacket > 0.001 {
			t.Errorf("%v: %.4f allocations a packet (%v for 1000 packets, %v for 21000)", mode, perPacket, a, b)
		}
	}
}
