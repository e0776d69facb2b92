package pflog

import (
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkLog measures Log on the packet path, three ways:
//
//   - accept: one producer, a ring that is never full (the benchmark empties
//     it with the timer stopped): the cost of the copy itself.
//   - contended: every P logs at once while a consumer takes records out as
//     fast as it can without encoding them: the cost of contention on tail.
//   - writer: the real writer goroutine encoding records (no sink).
//
// drops/op is the share of calls that found the ring full; those return
// after one failed check, which flatters ns/op when it is high.
func BenchmarkLog(b *testing.B) {
	r := rec(b, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	newL := func(b *testing.B) *Logger {
		l, err := newLogger(Config{RingSize: 1 << 14})
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	discard := func(l *Logger) func() {
		var rec Record
		return func() {
			for l.q.peek(&rec) {
				l.q.release()
			}
		}
	}
	b.Run("accept", func(b *testing.B) {
		l := newL(b)
		benchAccept(b, &r, l.Log, discard(l))
	})
	b.Run("contended", func(b *testing.B) {
		l := newL(b)
		benchContended(b, &r, l.Log, discard(l), &l.dropped)
	})
	b.Run("writer", func(b *testing.B) {
		l, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := r
			for pb.Next() {
				l.Log(&r)
			}
		})
		b.ReportMetric(float64(l.Stats().Dropped)/float64(b.N), "drops/op")
	})
}

// BenchmarkLogMutexRing is the alternative Log did not take: the same ring
// behind a sync.Mutex held for the copy. It is here to keep the comparison
// in Log's comment honest.
func BenchmarkLogMutexRing(b *testing.B) {
	r := rec(b, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	b.Run("accept", func(b *testing.B) {
		q := newMutexRing(1<<14, DefaultSnapLen)
		benchAccept(b, &r, q.push, q.discard)
	})
	b.Run("contended", func(b *testing.B) {
		q := newMutexRing(1<<14, DefaultSnapLen)
		benchContended(b, &r, q.push, q.discard, &q.dropped)
	})
}

func benchAccept(b *testing.B, r *Record, push func(*Record) bool, discard func()) {
	b.ReportAllocs()
	for b.Loop() {
		if !push(r) {
			b.StopTimer()
			discard()
			b.StartTimer()
		}
	}
}

func benchContended(b *testing.B, r *Record, push func(*Record) bool, discard func(), dropped *atomic.Uint64) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				discard()
			}
		}
	})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := *r
		for pb.Next() {
			push(&r)
		}
	})
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(dropped.Load())/float64(b.N), "drops/op")
}

type mutexRing struct {
	mu         sync.Mutex
	head, tail uint64
	slots      []slot
	data       []byte
	snap       int
	dropped    atomic.Uint64
}

func newMutexRing(size, snap int) *mutexRing {
	return &mutexRing{slots: make([]slot, size), data: make([]byte, size*snap), snap: snap}
}

func (q *mutexRing) push(r *Record) bool {
	t := r.Time.UnixNano()
	q.mu.Lock()
	if q.tail-q.head == uint64(len(q.slots)) {
		q.mu.Unlock()
		q.dropped.Add(1)
		return false
	}
	i := int(q.tail % uint64(len(q.slots)))
	s := &q.slots[i]
	s.time = t
	s.n = uint32(copy(q.data[i*q.snap:(i+1)*q.snap], r.Packet))
	s.length = uint32(r.length())
	s.ruleNr = r.RuleNr
	s.action, s.reason, s.dir, s.family = r.Action, r.Reason, r.Dir, r.family()
	s.ifname = r.Ifname
	q.tail++
	q.mu.Unlock()
	return true
}

func (q *mutexRing) discard() {
	q.mu.Lock()
	q.head = q.tail
	q.mu.Unlock()
}

// BenchmarkDrainToFile is the writer goroutine's cost per record: encode and
// write to a file, in batches.
func BenchmarkDrainToFile(b *testing.B) {
	r := rec(b, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	l, err := newLogger(Config{Path: b.TempDir() + "/pflog", MaxSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for range maxBatch {
			l.Log(&r)
		}
		l.drain()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*maxBatch), "ns/record")
	l.file.close()
}

func BenchmarkFormat(b *testing.B) {
	r := rec(b, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendFormat(buf[:0], &r)
	}
}
