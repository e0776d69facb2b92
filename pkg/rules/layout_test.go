package rules

import (
	"testing"
	"unsafe"
)

// TestCruleLayout pins what compile.go's comments promise: a compiled rule
// is 160 bytes, and the fields an IPv4 test reads come within its first 80
// (so that 10,000 rules stay in the caches).
func TestCruleLayout(t *testing.T) {
	if got := unsafe.Sizeof(crule{}); got != 160 {
		t.Errorf("crule is %d bytes; update compile.go's comments", got)
	}
	var c crule
	for name, end := range map[string]uintptr{
		"src":   unsafe.Offsetof(c.src) + unsafe.Sizeof(c.src),
		"dst":   unsafe.Offsetof(c.dst) + unsafe.Sizeof(c.dst),
		"sport": unsafe.Offsetof(c.sport) + unsafe.Sizeof(c.sport),
		"dport": unsafe.Offsetof(c.dport) + unsafe.Sizeof(c.dport),
		"proto": unsafe.Offsetof(c.proto) + unsafe.Sizeof(c.proto),
		"hasOn": unsafe.Offsetof(c.hasOn) + unsafe.Sizeof(c.hasOn),
	} {
		if end > 80 {
			t.Errorf("crule.%s ends at byte %d, past the 80 an IPv4 test reads", name, end)
		}
	}
}
