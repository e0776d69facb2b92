package reject

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(10, 3) // one every 100 ms, 3 at once
	now := int64(time.Hour)
	allowed := func(n int) (k int) {
		for range n {
			if l.allow(now) {
				k++
			}
		}
		return k
	}
	if k := allowed(10); k != 3 {
		t.Errorf("a burst: %d allowed, want 3", k)
	}
	now += int64(50 * time.Millisecond)
	if k := allowed(10); k != 0 {
		t.Errorf("50 ms later: %d allowed, want 0", k)
	}
	now += int64(50 * time.Millisecond)
	if k := allowed(10); k != 1 {
		t.Errorf("100 ms later: %d allowed, want 1", k)
	}
	now += int64(time.Second)
	if k := allowed(10); k != 3 {
		t.Errorf("after a quiet second: %d allowed, want the burst, 3", k)
	}
	// A steady 10/s for 10 s: all of it, and nothing more.
	total := 0
	for range 100 {
		now += int64(100 * time.Millisecond)
		total += allowed(5)
	}
	if total != 100 {
		t.Errorf("10 s at the rate: %d allowed, want 100", total)
	}
}

func TestLimiterUnlimited(t *testing.T) {
	l := newLimiter(-1, 0)
	for i := range 10000 {
		if !l.allow(0) {
			t.Fatalf("refused the %dth", i)
		}
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := newLimiter(1000, 100)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if l.allow(0) {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n.Load() != 100 {
		t.Errorf("%d allowed at one instant, want the burst, 100", n.Load())
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.normalize()
	if c.Rate != DefaultRate || c.Burst != DefaultBurst {
		t.Errorf("zero Config: %+v", c)
	}
	if c := (Config{Rate: -1}).normalize(); c.Rate != -1 {
		t.Errorf("negative rate changed: %+v", c)
	}
}
