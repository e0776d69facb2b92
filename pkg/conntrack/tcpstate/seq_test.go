package tcpstate

import "testing"

// TestSeq: sequence numbers compare modulo 2^32, within half the space,
// across the wrap; sizes are distances.
func TestSeq(t *testing.T) {
	const top = Seq(0xffffff00)
	for _, c := range []struct {
		a, b          Seq
		before, after bool
	}{
		{1, 2, true, false},
		{2, 1, false, true},
		{5, 5, false, false},
		{top, 0x10, true, false}, // 0x10 is 0x110 after top, across the wrap
		{0x10, top, false, true},
		{0, 0x7fffffff, true, false},
		{0, 0x80000001, false, true}, // more than half the space ahead: behind
	} {
		if got := c.a.Before(c.b); got != c.before {
			t.Errorf("%#x.Before(%#x) = %v", c.a, c.b, got)
		}
		if got := c.a.After(c.b); got != c.after {
			t.Errorf("%#x.After(%#x) = %v", c.a, c.b, got)
		}
	}
	if got := top.Add(0x110); got != 0x10 {
		t.Errorf("Add across the wrap: %#x", got)
	}
	if got := Seq(0x10).Sub(0x110); got != top {
		t.Errorf("Sub across the wrap: %#x", got)
	}
	if got := top.Size(0x10); got != 0x110 {
		t.Errorf("Size across the wrap: %#x", got)
	}
	for _, c := range []struct {
		s, first Seq
		size     uint32
		in       bool
	}{
		{top, top, 1, true},
		{top.Add(1), top, 1, false},
		{0x0f, top, 0x110, true},
		{0x10, top, 0x110, false},
		{top.Sub(1), top, 0x110, false},
		{5, 5, 0, false},
	} {
		if got := c.s.InWindow(c.first, c.size); got != c.in {
			t.Errorf("%#x.InWindow(%#x, %#x) = %v, want %v", c.s, c.first, c.size, got, c.in)
		}
	}
}
