package pflog

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// FuzzRead: arbitrary bytes never panic the Reader or Format, and every
// record the Reader accepts survives being written again and read back.
func FuzzRead(f *testing.F) {
	f.Add(writeFile(f, sampleRecords(f)))
	f.Add(AppendFileHeader(nil))
	bad := writeFile(f, sampleRecords(f)[:2])
	bad[FileHeaderLen+RecordHeaderLen] = 100 // OpenBSD's header length
	f.Add(bad)
	f.Fuzz(func(t *testing.T, b []byte) {
		rd, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		var r Record
		for range 1000 {
			err := rd.Next(&r)
			if errors.Is(err, ErrBadHeader) {
				continue
			}
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrBadRecord) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			line := Format(&r)
			if r.Family == 0 {
				continue // an unknown family is re-encoded from the first nibble
			}
			again := readAll(t, bytes.NewReader(writeFile(t, []Record{r})))
			if len(again) != 1 {
				t.Fatalf("re-read %d records", len(again))
			}
			g := again[0]
			n := min(len(r.Packet), FileSnapLen-HeaderLen)
			if g.Action != r.Action || g.Reason != r.Reason || g.Dir != r.Dir || g.Family != r.Family ||
				g.RuleNr != r.RuleNr || g.Ifname != r.Ifname || g.Length != r.Length ||
				!bytes.Equal(g.Packet, r.Packet[:n]) || !g.Time.Equal(r.Time.Truncate(time.Microsecond)) {
				t.Fatalf("round trip\n got %+v\nwant %+v", g, r)
			}
			if Format(&g) != line {
				t.Fatalf("Format changed: %q, then %q", line, Format(&g))
			}
		}
	})
}
