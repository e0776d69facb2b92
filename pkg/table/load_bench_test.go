package table

import (
	"bytes"
	"runtime"
	"testing"
)

// BenchmarkLoadStream loads the 1M-line file of BenchmarkLoad with Load,
// which builds as it reads, without a parsed slice. MiB-kept is the heap
// the table keeps after a GC.
func BenchmarkLoadStream(b *testing.B) {
	text := tableText(genMix(1_000_000, 1))
	b.SetBytes(int64(len(text)))
	var kept float64
	for b.Loop() {
		before := heapInUse()
		tb, err := Load(Config{}, "bench", bytes.NewReader(text))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		kept = float64(heapInUse()-before) / (1 << 20)
		runtime.KeepAlive(tb)
		b.StartTimer()
	}
	b.ReportMetric(kept, "MiB-kept")
}

// BenchmarkLoadPeak measures the peak of a 1M-entry load: the heap in use
// after a GC at the fullest point of the build (the version's parts built
// so far, the keys not yet in, and what the caller holds), less the heap
// before, the text excepted. Its ns/op is not a load time: it stops for a
// GC after every part. parse+new is New given Parse's slice, which the
// caller holds throughout (as pkg/rules does with TableDef.Addrs); stream
// is Load.
func BenchmarkLoadPeak(b *testing.B) {
	text := tableText(genMix(1_000_000, 1))
	for _, way := range []string{"parse+new", "stream"} {
		b.Run(way, func(b *testing.B) {
			var peak, parsed float64
			for b.Loop() {
				before := heapInUse()
				bt := new(batch)
				var top uint64
				bt.built = func() { top = max(top, heapInUse()) }
				if way == "stream" {
					if err := scan("bench", bytes.NewReader(text), bt.add); err != nil {
						b.Fatal(err)
					}
					runtime.KeepAlive(bt.version())
				} else {
					ps, err := Parse("bench", bytes.NewReader(text))
					if err != nil {
						b.Fatal(err)
					}
					parsed = float64(heapInUse()-before) / (1 << 20)
					for _, p := range ps { // as build does
						bt.add(p)
					}
					runtime.KeepAlive(bt.version())
					runtime.KeepAlive(ps)
				}
				peak = float64(top-before) / (1 << 20)
			}
			b.ReportMetric(peak, "MiB-peak")
			if way != "stream" {
				b.ReportMetric(parsed, "MiB-slice")
			}
		})
	}
}
