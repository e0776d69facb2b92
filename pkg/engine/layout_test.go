package engine

import (
	"testing"
	"unsafe"
)

// TestDecisionSize pins the size Decision's comment gives: the daemon,
// replay and the harness set one per packet in place (DecideInto).
func TestDecisionSize(t *testing.T) {
	if got := unsafe.Sizeof(Decision{}); got != 48 {
		t.Errorf("Decision is %d bytes; update its comment", got)
	}
}
