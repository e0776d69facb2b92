package engine_test

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/statewall/statewall/internal/pkttest"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// knownConn writes into b the packet template tmpl rewritten to client j's
// connection: client 198.19.x.y (x, y from j), port 1024 + j>>16, so that
// a million connections stay inside 198.18.0.0/15. reply says tmpl is the
// server's packet (the client is then the destination). Only addresses and
// ports change: the IPv4 header checksum is not verified on the decision
// path and transport checksums are left to the kernel (NoChecksum, as the
// daemon runs), so the templates' stale checksums do not matter.
func knownConn(b, tmpl []byte, j int, reply bool) []byte {
	b = append(b[:0], tmpl...)
	addr, port := 12, 20 // IPv4 source address, TCP source port
	if reply {
		addr, port = 16, 22
	}
	b[addr], b[addr+1], b[addr+2], b[addr+3] = 198, 19, byte(j>>8), byte(j)
	binary.BigEndian.PutUint16(b[port:], uint16(1024+j>>16))
	return b
}

// BenchmarkStatefulKnown is issue #6's offline stateful target as it is
// stated: decode + direction + stateful decision for a packet of a known
// TCP connection, with n established connections in the table. The
// packets are spread over every connection (i*2654435761 mod n), alternate
// client and server, and come 16 at a time, decoded and announced with
// PrefetchBatch before they are decided (DecideBatch), as replay handles
// them. Writing each packet's addresses into its buffer (a 54-byte copy)
// is inside the timer, standing in for the packet's arrival.
//
// Unlike the harness's "stateful" column (bench/results/offline.md), no
// packet here starts or ends a connection: that traffic mix also pays for
// the rules, new entries and their expiry.
func BenchmarkStatefulKnown(b *testing.B) {
	rs := benchRuleset(b)
	var (
		syn    = pkttest.MustBytes(b, "tcp 198.18.0.1:40000 > 198.18.0.2:80 S seq=1000")
		synAck = pkttest.MustBytes(b, "tcp 198.18.0.2:80 > 198.18.0.1:40000 SA seq=5000 ack=1001")
		ack    = pkttest.MustBytes(b, "tcp 198.18.0.1:40000 > 198.18.0.2:80 A seq=1001 ack=5001")
		reply  = pkttest.MustBytes(b, "tcp 198.18.0.2:80 > 198.18.0.1:40000 A seq=5001 ack=1001")
	)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	for _, n := range []int{1000, 100000, 1000000} {
		b.Run(fmt.Sprintf("conns=%s", countName(n)), func(b *testing.B) {
			ct := conntrack.New(conntrack.Config{Seed: 7, Limit: 2 * n, NoChecksum: true})
			st := engine.NewStateful(rs, ct)
			var p packet.Packet
			buf := make([]byte, 0, 128)
			for j := range n {
				for _, step := range []struct {
					tmpl  []byte
					reply bool
				}{{syn, false}, {synAck, true}, {ack, false}} {
					buf = knownConn(buf, step.tmpl, j, step.reply)
					p.Decode(buf, packet.LinkIP)
					if d := st.Decide(&p, dirOf(rs, &p), now); d.Verdict != engine.Pass {
						b.Fatalf("connection %d: handshake blocked: %v", j, d)
					}
				}
			}
			if ct.Len() != n {
				b.Fatalf("%d connections in the table, want %d", ct.Len(), n)
			}
			const batch = 16
			bufs := make([][]byte, batch)
			for m := range bufs {
				bufs[m] = make([]byte, 0, 128)
			}
			ps := make([]packet.Packet, batch)
			var dirs [batch]rules.Dir
			var cb conntrack.Batch
			next := uint64(0)
			var d engine.Decision
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := i % batch
				if k == 0 {
					for m := range ps {
						j := int(next * 2654435761 % uint64(n))
						isReply := next&1 == 1
						tmpl := ack
						if isReply {
							tmpl = reply
						}
						bufs[m] = knownConn(bufs[m], tmpl, j, isReply)
						ps[m].Decode(bufs[m], packet.LinkIP)
						dirs[m] = dirOf(rs, &ps[m])
						next++
					}
					st.PrefetchBatch(&cb, ps)
				}
				if st.DecideBatch(&d, &cb, k, rules.Where{Dir: dirs[k]}, now); d.Cause != engine.CauseState {
					b.Fatalf("packet %d: %v, want a pass by state", i, d)
				}
			}
		})
	}
}

func countName(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
