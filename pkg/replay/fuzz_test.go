package replay

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statewall/statewall/pkg/rules"
)

// FuzzReplayFile feeds arbitrary files to the replay, seeded with real
// captures and cut or corrupted versions of them. Whatever the bytes: no
// panic; packets come out with consecutive indexes; and an error names the
// file, and, once the header was read, the index of the packet that could
// not be read, which is exactly the number of packets that came out.
func FuzzReplayFile(f *testing.F) {
	for _, name := range []string{"../../testdata/ping-v4.pcap", "../../testdata/http-curl-v6.pcap", "../../../shared/pcaps/ipv4-frag-tcp-syn.pcap"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		c := append([]byte(nil), b...)
		c[len(c)/3] ^= 0xff
		f.Add(c)
	}
	rs, err := rules.Parse("fuzz.rules", []byte("set default pass\nset invalid block\npass proto tcp to any port 80\n"))
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "in.pcap")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		rp, err := New(Config{Rules: rs})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = rp.ReplayFile(path, func(r *Record) error {
			if r.Index != n {
				t.Fatalf("record index %d, want %d", r.Index, n)
			}
			n++
			return nil
		})
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), path) {
			t.Fatalf("error does not name the file: %v", err)
		}
		var fe *FileError
		if errors.As(err, &fe) && fe.Index != n {
			t.Fatalf("error at packet %d after %d packets came out: %v", fe.Index, n, err)
		}
	})
}
