//go:build linux

package nfq

import (
	"fmt"
	"testing"
)

// TestRawHoldRelease: a held packet gets no verdict until Release, and
// while it is held no batch verdict goes out (one for a later id would
// cover it); after its Release, batches resume.
func TestRawHoldRelease(t *testing.T) {
	pq := newPairQueue(t, QueueConfig{}, func(p *Packet) Verdict {
		if p.ID == 11 {
			return Hold
		}
		return Accept
	})
	pq.r.queues = []*queue{pq.queue}
	pq.r.cfg.Queues = [2]uint16{7, 7}
	for id := uint32(10); id < 14; id++ {
		pq.process(packetMsg(id, []byte{1, 2, 3}))
	}
	pq.flush()
	want := []sentVerdict{{false, 10, Accept}, {false, 12, Accept}, {false, 13, Accept}}
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("while 11 is held: written %v, want plain verdicts %v", got, want)
	}
	if err := pq.r.Release(7, 11, Drop); err != nil {
		t.Fatal(err)
	}
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint([]sentVerdict{{false, 11, Drop}}) {
		t.Errorf("release: written %v", got)
	}
	for id := uint32(14); id < 17; id++ {
		pq.process(packetMsg(id, []byte{1, 2, 3}))
	}
	pq.flush()
	if got := pq.written(t); len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint([]sentVerdict{{true, 16, Accept}}) {
		t.Errorf("after the release: written %v, want one batch", got)
	}
	st := pq.r.Stats()
	if st[0].Held != 1 || st[0].Accepted != 6 || st[0].Dropped != 1 || pq.holding.Load() != 0 {
		t.Errorf("stats %+v, holding %d", st[0], pq.holding.Load())
	}
	if err := pq.r.Release(9, 1, Accept); err == nil {
		t.Error("release on a queue not read here: no error")
	}
}
