package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/bench/trafficgen"
	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/packet"
)

// source hands out the chunks of packets a run measures. Every
// configuration processes the same chunk before the next one is made.
type source interface {
	// next returns at least n packets (a capture source rounds up to whole
	// loops of its captures) or, for generated traffic, exactly n.
	next(n int) *chunk
}

// genSource makes chunks with a traffic generator, into one reused arena.
type genSource struct {
	g *trafficgen.Generator
	b trafficgen.Batch
}

func newGenSource(cfg trafficgen.Config, chunkSize int) (*genSource, error) {
	g, err := trafficgen.New(cfg)
	if err != nil {
		return nil, err
	}
	s := &genSource{g: g}
	s.b.Grow(chunkSize)
	return s, nil
}

func (s *genSource) next(n int) *chunk {
	s.g.Fill(&s.b, n)
	return &chunk{b: &s.b, passes: 1}
}

// capSource replays captures held in memory. A loop of the captures is
// played with its timestamps moved forward by shift from the loop before:
// further than the longest conntrack timeout, so that every connection of
// the previous loop has expired and each loop is labelled as the first
// (the expired entries are reaped as the new loop's packets meet them).
type capSource struct {
	b         trafficgen.Batch
	links     []packet.LinkType
	shift     int64
	off       int64
	files     int
	fragments int // IP fragments left out
}

// loadCaptures reads every packet of the files into one arena. Fragments
// are left out: conntrack sees only reassembled datagrams (replay runs
// defrag first), and to keep one set of packets for every configuration
// none of them gets the fragments.
func loadCaptures(paths []string, to conntrack.Timeouts) (*capSource, error) {
	s := &capSource{files: len(paths)}
	s.b.Off = append(s.b.Off, 0)
	var p packet.Packet
	first, last := int64(0), int64(0)
	for _, path := range paths {
		err := readCapture(path, func(data []byte, link packet.LinkType, ts int64) {
			p.Decode(data, link)
			if p.Kind == packet.KindOK && p.Frag.IsFragment {
				s.fragments++
				return
			}
			if len(s.b.Time) == 0 || ts < first {
				first = ts
			}
			last = max(last, ts)
			s.b.Data = append(s.b.Data, data...)
			s.b.Off = append(s.b.Off, int32(len(s.b.Data)))
			s.b.Time = append(s.b.Time, ts)
			s.links = append(s.links, link)
		})
		if err != nil {
			return nil, err
		}
	}
	if s.b.Len() == 0 {
		return nil, errors.New("the captures hold no packet to measure")
	}
	s.shift = last - first + int64(maxTimeout(to.WithDefaults())) + int64(time.Second)
	return s, nil
}

func (s *capSource) next(n int) *chunk {
	passes := max(1, (n+s.b.Len()-1)/s.b.Len())
	c := &chunk{b: &s.b, links: s.links, tsOff: s.off, passes: passes, shift: s.shift}
	s.off += int64(passes) * s.shift
	return c
}

// readCapture calls fn for every packet of a pcap or pcapng file.
func readCapture(path string, fn func(data []byte, link packet.LinkType, ts int64)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return fmt.Errorf("%s: not a pcap or pcapng file: %v", path, err)
	}
	if magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a {
		r, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		for i := 0; ; i++ {
			data, ci, err := r.ZeroCopyReadPacketData()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: packet %d: %v", path, i, err)
			}
			link := packet.LinkType(r.LinkType())
			if iface, err := r.Interface(ci.InterfaceIndex); err == nil {
				link = packet.LinkType(iface.LinkType)
			}
			fn(data, link, ci.Timestamp.UnixNano())
		}
	}
	r, err := pcapgo.NewReader(br)
	if err != nil {
		return fmt.Errorf("%s: not a pcap or pcapng file: %v", path, err)
	}
	for i := 0; ; i++ {
		data, ci, err := r.ZeroCopyReadPacketData()
		if err == io.EOF && ci.CaptureLength == 0 {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: packet %d: %v", path, i, err)
		}
		fn(data, packet.LinkType(r.LinkType()), ci.Timestamp.UnixNano())
	}
}

// maxTimeout is the longest of the conntrack timeouts.
func maxTimeout(t conntrack.Timeouts) time.Duration {
	c := t.TCP
	return max(c.SynSent, c.SynRecv, c.Established, c.FinWait, c.CloseWait, c.LastAck, c.TimeWait,
		c.Close, c.MaxRetrans, c.Unacknowledged, c.SynSent2, t.UDP, t.UDPStream, t.ICMP, t.ICMPv6, t.Generic)
}
