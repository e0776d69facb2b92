package replay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/gopacket/gopacket/pcapgo"
)

// samePcapReads reads b with pcapgo and with pcapReader (when it takes the
// file) and fails at the first record on which they differ: its bytes, its
// capture info, or the error, which must be the same text and the same
// io.EOF or io.ErrUnexpectedEOF. half makes the reads return a few bytes at
// a time, as a pipe may.
func samePcapReads(t *testing.T, b []byte, half bool) {
	t.Helper()
	src := func() io.Reader {
		var r io.Reader = bytes.NewReader(b)
		if half {
			r = iotest.HalfReader(r)
		}
		return r
	}
	want, err := pcapgo.NewReader(src())
	if err != nil || len(b) < 24 {
		return // not a pcap: openSource leaves it to pcapgo
	}
	r := src()
	hdr := make([]byte, 24)
	io.ReadFull(r, hdr)
	got, ok := newPcapReader(r, hdr)
	if !ok {
		return // a version pcapgo reads and pcapReader leaves to it
	}
	if got.link != uint32(want.LinkType()) && uint16(got.link) != uint16(want.LinkType()) {
		t.Fatalf("link %d, pcapgo %d", got.link, want.LinkType())
	}
	for i := 0; ; i++ {
		wd, wci, werr := want.ZeroCopyReadPacketData()
		gd, gci, gerr := got.next()
		if (werr == nil) != (gerr == nil) || werr != nil && (werr.Error() != gerr.Error() ||
			errors.Is(werr, io.EOF) != errors.Is(gerr, io.EOF) || errors.Is(werr, io.ErrUnexpectedEOF) != errors.Is(gerr, io.ErrUnexpectedEOF)) {
			t.Fatalf("record %d: error %v, pcapgo %v", i, gerr, werr)
		}
		if werr != nil {
			return
		}
		if !bytes.Equal(gd, wd) || !gci.Timestamp.Equal(wci.Timestamp) || gci.CaptureLength != wci.CaptureLength || gci.Length != wci.Length {
			t.Fatalf("record %d: %d bytes %+v, pcapgo %d bytes %+v", i, len(gd), gci, len(wd), wci)
		}
	}
}

// pcapFile builds a pcap file: the header with magic, snaplen and link
// type in the byte order bo, then records of the given lengths (capture
// length, original length), data filled with their index.
func pcapFile(bo binary.ByteOrder, magic uint32, snaplen uint32, recs ...[2]uint32) []byte {
	b := make([]byte, 24)
	bo.PutUint32(b, magic)
	bo.PutUint16(b[4:], 2)
	bo.PutUint16(b[6:], 4)
	bo.PutUint32(b[16:], snaplen)
	bo.PutUint32(b[20:], 101)
	for i, r := range recs {
		h := make([]byte, 16)
		bo.PutUint32(h, 1700000000+uint32(i))
		bo.PutUint32(h[4:], 999999)
		bo.PutUint32(h[8:], r[0])
		bo.PutUint32(h[12:], r[1])
		b = append(b, h...)
		b = append(b, bytes.Repeat([]byte{byte(i)}, int(r[0]))...)
	}
	return b
}

// TestPcapReaderAsPcapgo: pcapReader reads what pcapgo reads, and fails
// where and as pcapgo fails: real captures, both byte orders and both
// timestamp resolutions, records larger than its buffer, lengths past the
// snap length or the original length, files cut anywhere.
func TestPcapReaderAsPcapgo(t *testing.T) {
	var files [][]byte
	caps, _ := filepath.Glob(filepath.Join("../../testdata", "*.pcap"))
	for _, name := range caps {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	le, be := binary.ByteOrder(binary.LittleEndian), binary.ByteOrder(binary.BigEndian)
	for _, bo := range []binary.ByteOrder{le, be} {
		for _, magic := range []uint32{pcapMagicMicros, pcapMagicNanos} {
			files = append(files,
				pcapFile(bo, magic, 65535, [2]uint32{60, 60}, [2]uint32{0, 0}, [2]uint32{1500, 9000}),
				pcapFile(bo, magic, 1<<20, [2]uint32{600000, 600000}, [2]uint32{40, 40}), // past the buffer
				pcapFile(bo, magic, 100, [2]uint32{300000, 300000}),                      // past snaplen and pcapgo's eager maximum
				pcapFile(bo, magic, 100, [2]uint32{200, 300}),                            // past snaplen, within the eager maximum
				pcapFile(bo, magic, 65535, [2]uint32{60, 40}),                            // past the original length
			)
		}
	}
	for i, b := range files {
		for _, cut := range []int{len(b), len(b) - 1, len(b) / 2, 24 + 7, 24 + 16, 40} {
			if cut < 24 || cut > len(b) {
				continue
			}
			for _, half := range []bool{false, true} {
				samePcapReads(t, b[:cut], half)
				if t.Failed() {
					t.Fatalf("file %d cut at %d (half reads %v)", i, cut, half)
				}
			}
		}
	}
}

// FuzzPcapReader: pcapReader and pcapgo agree on any file.
func FuzzPcapReader(f *testing.F) {
	for _, name := range []string{"ping-v4.pcap", "http-curl-v6.pcap"} {
		b, err := os.ReadFile(filepath.Join("../../testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(pcapFile(binary.BigEndian, pcapMagicNanos, 100, [2]uint32{80, 90}, [2]uint32{200, 200}))
	f.Fuzz(func(t *testing.T, b []byte) {
		samePcapReads(t, b, false)
		samePcapReads(t, b, true)
	})
}
