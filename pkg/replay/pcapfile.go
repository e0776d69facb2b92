package replay

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/statewall/statewall/pkg/packet"
)

// source reads one capture file, pcap or pcapng, packet by packet, into a
// buffer it reuses (pcapReader for a plain pcap file, pcapgo's
// ZeroCopyReadPacketData otherwise): the bytes a call returns are valid
// until the next call.
type source struct {
	name string
	f    *os.File
	fast *pcapReader // a plain pcap file (pcapread.go)
	pcap *pcapgo.Reader
	ng   *pcapgo.NgReader
	link packet.LinkType
}

// errNotCapture is returned for a file that is neither pcap nor pcapng.
var errNotCapture = errors.New("not a pcap or pcapng file")

func openSource(name string) (*source, error) {
	f := os.Stdin // "-": a capture piped in (tcpdump -w - | statewall replay ... -)
	if name != "-" {
		var err error
		if f, err = os.Open(name); err != nil {
			return nil, err
		}
	}
	br := bufio.NewReaderSize(f, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		f.Close()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w (file shorter than a header)", name, errNotCapture)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &source{name: name, f: f}
	switch {
	case magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a:
		// WantMixedLinkType: a pcapng may hold interfaces of different
		// link types (Ethernet and a tunnel, say); next decodes each packet
		// by its own interface's. With the default options pcapgo silently
		// skips every packet whose interface differs from the first one.
		s.ng, err = pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err == nil {
			s.link = packet.LinkType(s.ng.LinkType())
		}
	default:
		if hdr, err := br.Peek(24); err == nil {
			if fast, ok := newPcapReader(br, hdr); ok {
				br.Discard(24)
				s.fast, s.link = fast, packet.LinkType(fast.link)
				return s, nil
			}
		}
		s.pcap, err = pcapgo.NewReader(br)
		if err == nil {
			s.link = packet.LinkType(s.pcap.LinkType())
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w: %v", name, errNotCapture, err)
	}
	return s, nil
}

// next returns the next packet, its link type, the name of the interface
// it was captured on ("" when the capture does not say: a pcap, or a
// pcapng interface without a name) and its capture info; io.EOF at the
// clean end of the file.
func (s *source) next() ([]byte, packet.LinkType, string, gopacket.CaptureInfo, error) {
	if s.ng != nil {
		data, ci, err := s.ng.ZeroCopyReadPacketData()
		if err != nil {
			return nil, 0, "", ci, err
		}
		link, name := s.link, ""
		if iface, err := s.ng.Interface(ci.InterfaceIndex); err == nil {
			link, name = packet.LinkType(iface.LinkType), iface.Name
		}
		return data, link, name, ci, nil
	}
	var data []byte
	var ci gopacket.CaptureInfo
	var err error
	if s.fast != nil {
		data, ci, err = s.fast.next()
	} else {
		data, ci, err = s.pcap.ZeroCopyReadPacketData()
	}
	if err == io.EOF && ci.CaptureLength > 0 {
		// The record header was read but none of the bytes it announces:
		// the file is cut, not at its end (pcapgo passes io.ReadFull's
		// io.EOF through).
		err = io.ErrUnexpectedEOF
	}
	return data, s.link, "", ci, err
}

func (s *source) close() error { return s.f.Close() }

// tsNanos converts a capture timestamp to the engines' clock.
func tsNanos(t time.Time) int64 { return t.UnixNano() }
