package packet

import (
	"testing"
)

// namedPackets are the packets the benchmarks and the allocation test run
// over: one of each shape that is common on the hot path.
func namedPackets(t testing.TB) []struct {
	name string
	data []byte
} {
	return []struct {
		name string
		data []byte
	}{
		{"tcp-syn-v4", tcpSYNv4(t)},
		{"tcp-ack-ts-v4", tcpAckTS(t)},
		{"tcp-data-v6", tcpDataV6(t)},
		{"udp-dns", udpDNS(t)},
		{"icmp-error", icmpErrorV4(t)},
		{"vlan", vlanTCP(t)},
		{"ipv6-ext", tcp6WithExtensions(t)},
	}
}

func TestNoAllocs(t *testing.T) {
	var p Packet
	for _, np := range namedPackets(t) {
		if n := testing.AllocsPerRun(100, func() { p.Decode(np.data, LinkEthernet) }); n != 0 {
			t.Errorf("Decode(%s): %v allocations, want 0", np.name, n)
		}
		p.Decode(np.data, LinkEthernet)
		if n := testing.AllocsPerRun(100, func() { p.L4ChecksumOK() }); n != 0 {
			t.Errorf("L4ChecksumOK(%s): %v allocations, want 0", np.name, n)
		}
		if n := testing.AllocsPerRun(100, func() { p.Payload() }); n != 0 {
			t.Errorf("Payload(%s): %v allocations, want 0", np.name, n)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, np := range namedPackets(b) {
		b.Run(np.name, func(b *testing.B) {
			var p Packet
			b.ReportAllocs()
			for b.Loop() {
				p.Decode(np.data, LinkEthernet)
			}
		})
	}
}

func BenchmarkL4ChecksumOK(b *testing.B) {
	big := serializeUDP4(b, string(make([]byte, 1472))) // a full 1500-byte IP datagram
	for _, np := range append(namedPackets(b), struct {
		name string
		data []byte
	}{"udp-1500", big}) {
		b.Run(np.name, func(b *testing.B) {
			var p Packet
			p.Decode(np.data, LinkEthernet)
			b.ReportAllocs()
			b.SetBytes(int64(p.L4Len))
			for b.Loop() {
				if !p.L4ChecksumOK() {
					b.Fatal("bad checksum")
				}
			}
		})
	}
}

// BenchmarkDecodeCaptures decodes every packet of the shared captures: a
// mix with real option layouts and sizes.
func BenchmarkDecodeCaptures(b *testing.B) {
	type frame struct {
		data []byte
		link LinkType
	}
	var frames []frame
	for _, path := range captureFiles(b) {
		pkts, link := readCapture(b, path)
		for _, cp := range pkts {
			frames = append(frames, frame{cp.data, link})
		}
	}
	var p Packet
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range frames {
			p.Decode(f.data, f.link)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/packet")
}
