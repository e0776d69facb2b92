package trafficgen

import (
	"time"

	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// WritePcap writes the next n packets of g to w as a pcap file of raw IP
// (LINKTYPE_RAW) with nanosecond timestamps from the virtual clock, so that
// `statewall replay` sees the same stream a benchmark measures.
func WritePcap(w io.Writer, g *Generator, n int) error {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(MaxLen, layers.LinkTypeRaw); err != nil {
		return err
	}
	buf := make([]byte, MaxLen)
	for range n {
		p := g.Next(buf)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, p.Time), CaptureLength: len(p.Data), Length: len(p.Data)}
		if err := pw.WritePacket(ci, p.Data); err != nil {
			return err
		}
	}
	return nil
}
