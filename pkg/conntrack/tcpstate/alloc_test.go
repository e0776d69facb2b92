package tcpstate

import (
	"testing"
	"unsafe"

	"github.com/statewall/statewall/pkg/packet"
)

// established returns a connection after handshake() and its status.
func established(tb testing.TB) (Conn, Status) {
	tb.Helper()
	s := &sim{}
	for _, r := range handshake() {
		s.send(r.from, r.p)
	}
	if s.c.State != Established || !s.st.Assured {
		tb.Fatalf("handshake left %v %+v", s.c.State, s.st)
	}
	return s.c, s.st
}

func TestNoAllocs(t *testing.T) {
	base, st := established(t)
	ack := seg("A", 1001, 5001, 8192)
	dataSeg := seg("PA", 1001, 5001, 8192, data(1000))
	syn := seg("S", 1000, 0, 8192, wscale(7), sackOK(), ts())
	for name, f := range map[string]func(){
		"Step established ACK": func() {
			c := base
			Step(&c, ack, Original, st, &DefaultTimeouts)
		},
		"StepInto established ACK": func() {
			c := base
			var r Result
			StepInto(&r, &c, ack, Original, st, &DefaultTimeouts)
		},
		"Step established data": func() {
			c := base
			Step(&c, dataSeg, Original, st, &DefaultTimeouts)
		},
		"Start+Step SYN": func() {
			var c Conn
			Start(&c, syn)
			Step(&c, syn, Original, Status{}, nil)
		},
		"Check": func() { Check(ack) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", name, n)
		}
	}
}

func BenchmarkStep(b *testing.B) {
	base, st := established(b)
	for _, bc := range []struct {
		name string
		dir  Dir
		p    *packet.Packet
	}{
		{"established-ack", Original, seg("A", 1001, 5001, 8192)},
		{"established-data", Original, seg("PA", 1001, 5001, 8192, data(1000))},
		{"established-reply-sack", Reply, seg("A", 5001, 1001, 8192, sack(1001, 1001))},
		{"invalid-window", Original, seg("PA", 91001, 5001, 8192, data(10))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := base
				Step(&c, bc.p, bc.dir, st, &DefaultTimeouts)
			}
		})
	}
	b.Run("start-syn", func(b *testing.B) {
		syn := seg("S", 1000, 0, 8192, wscale(7), sackOK(), ts())
		b.ReportAllocs()
		for b.Loop() {
			var c Conn
			Start(&c, syn)
			Step(&c, syn, Original, Status{}, &DefaultTimeouts)
		}
	})
}

// TestConnSize: 56 bytes keep a conntrack entry at two cache lines.
func TestConnSize(t *testing.T) {
	if got := unsafe.Sizeof(Conn{}); got != 56 {
		t.Errorf("Conn is %d bytes, want 56", got)
	}
}
