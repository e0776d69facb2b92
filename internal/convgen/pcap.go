package convgen

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Epoch is the time of a batch's start in the captures WritePcap writes: a
// fixed date, so that the same seeds give the same bytes.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// WritePcap writes pkts as a classic pcap of raw IP packets (link type 101,
// microsecond timestamps), packet i stamped Epoch+pkts[i].At.
func WritePcap(w io.Writer, pkts []Packet) error {
	bw := bufio.NewWriter(w)
	pw := pcapgo.NewWriter(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		return err
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: Epoch.Add(p.At), CaptureLength: len(p.Data), Length: len(p.Data)}
		if err := pw.WritePacket(ci, p.Data); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteFile writes pkts to the pcap file path.
func WriteFile(path string, pkts []Packet) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WritePcap(f, pkts); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Describe lists pkts one a line: index, time, seed and the generator's
// note.
func Describe(pkts []Packet) string {
	var b strings.Builder
	for i, p := range pkts {
		fmt.Fprintf(&b, "#%d %9.6fs seed %d: %s\n", i, p.At.Seconds(), p.Seed, p.Note)
	}
	return b.String()
}
