package reject

import "sync/atomic"

// limiter is a token bucket of burst tokens refilled at one token per
// interval, kept as the generic cell rate algorithm's theoretical arrival
// time (tat): a reply is allowed when tat is at most (burst-1) intervals
// ahead of now, and then moves tat one interval on. One atomic word and a
// compare-and-swap, so that concurrent queues never wait for each other
// on a lock. Time is passed in (nanoseconds on a monotonic clock), so
// tests advance a clock and never sleep.
//
// An interval of 0 (the zero value; newLimiter with a rate <= 0) allows
// everything.
type limiter struct {
	interval  int64 // nanoseconds per token
	tolerance int64 // (burst-1) * interval
	tat       atomic.Int64
}

func newLimiter(rate, burst int) *limiter {
	if rate <= 0 {
		return &limiter{}
	}
	iv := max(int64(1e9)/int64(rate), 1)
	return &limiter{interval: iv, tolerance: int64(burst-1) * iv}
}

// allow reports whether a reply may go at time now, and takes its token.
func (l *limiter) allow(now int64) bool {
	if l.interval == 0 {
		return true
	}
	for {
		old := l.tat.Load()
		tat := max(old, now)
		if tat-now > l.tolerance {
			return false
		}
		if l.tat.CompareAndSwap(old, tat+l.interval) {
			return true
		}
	}
}
