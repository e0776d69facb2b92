package replay

import (
	"math/rand/v2"
	"testing"
)

// TestHoldQueueAgainstSlice runs random pushes and pops on a holdQueue and
// on a plain slice: the same records in the same order, the blocks in use
// never more than the records need plus two, and the block list copied
// linearly.
func TestHoldQueueAgainstSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q holdQueue
	var model []int
	pushed := 0
	for step := range 200_000 {
		// Phases that grow (a pop for two pushes) and shrink (five pops
		// for a push), so that blocks come and go.
		pops := 2
		if (step/5000)%3 == 2 {
			pops = 5
		}
		if len(model) > 0 && rng.IntN(6) < pops {
			if q.at(0).rec.Index != model[0] {
				t.Fatalf("step %d: head %d, want %d", step, q.at(0).rec.Index, model[0])
			}
			q.pop()
			model = model[1:]
		} else {
			*q.push() = heldRecord{rec: Record{Index: pushed}}
			model = append(model, pushed)
			pushed++
		}
		if q.n != len(model) {
			t.Fatalf("step %d: %d records, want %d", step, q.n, len(model))
		}
		if q.n > 0 {
			i := rng.IntN(q.n)
			if got := q.at(i).rec.Index; got != model[i] {
				t.Fatalf("step %d: record %d is %d, want %d", step, i, got, model[i])
			}
		}
		if inUse := len(q.blocks) - q.first; inUse > q.n/holdBlock+2 {
			t.Fatalf("step %d: %d blocks in use for %d records", step, inUse, q.n)
		}
	}
	if q.moved > pushed {
		t.Errorf("%d block pointers copied for %d records pushed", q.moved, pushed)
	}
	t.Logf("%d pushed, %d left, %d block pointers copied", pushed, q.n, q.moved)
}
