package harness

import (
	"fmt"
	"runtime"

	"github.com/statewall/statewall/bench/trafficgen"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/rules"
)

// Loop is one configuration over generated traffic, one packet at a time:
// what Go benchmarks use, so that they measure exactly what the harness
// does (the same runner, warm-up and chunks):
//
//	for b.Loop() {
//		if l.Empty() {
//			b.StopTimer()
//			l.Refill()
//			b.StartTimer()
//		}
//		l.Step()
//	}
type Loop struct {
	r   *runner
	src *genSource
	c   *chunk
	i   int
	// CTEntries and BytesPerConn describe the connection table after the
	// warm-up (stateful configurations).
	CTEntries    int
	BytesPerConn float64
}

// NewLoop returns configuration config (Decode, Stateless, Stateful or
// Compare) under rs, fed by a generator of tc, its connection table warmed
// with warmRounds packets per flow, and its first chunk of chunk packets
// made.
func NewLoop(config string, rs *rules.Ruleset, tc trafficgen.Config, warmRounds, chunk int) (*Loop, error) {
	if !validConfig(config) {
		return nil, fmt.Errorf("bench: unknown configuration %q", config)
	}
	src, err := newGenSource(tc, chunk)
	if err != nil {
		return nil, err
	}
	flows := src.g.Flows()
	limit := max(rs.LimitStates, 4*flows)
	l := &Loop{r: newRunner(config, rs, conntrack.Config{Timeouts: rs.Timeouts, Limit: limit, Seed: tc.Seed + 1}), src: src}
	if l.r.stateful() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for left := warmRounds * flows; left > 0; left -= chunk {
			l.r.run(src.next(min(chunk, left)))
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		l.CTEntries = l.r.sf.CT.Len()
		mem := int64(m1.HeapAlloc) - int64(m0.HeapAlloc) + l.r.sf.CT.MappedBytes()
		l.BytesPerConn = float64(mem) / float64(max(l.CTEntries, 1))
	}
	l.c = src.next(chunk)
	return l, nil
}

func validConfig(name string) bool {
	for _, c := range Configurations {
		if c == name {
			return true
		}
	}
	return false
}

// Empty reports whether the chunk's packets are all processed.
func (l *Loop) Empty() bool { return l.i == l.c.b.Len() }

// Refill makes the next chunk.
func (l *Loop) Refill() {
	l.c = l.src.next(l.c.b.Len())
	l.i = 0
}

// Step processes the next packet. Precondition: !Empty().
func (l *Loop) Step() {
	l.r.step(l.c, l.i)
	l.i++
}
