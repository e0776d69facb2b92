package table

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseFile(t *testing.T) {
	ps, err := ParseFile("testdata/blocklist.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"198.18.0.1/32", "198.18.0.2/32", "198.18.1.0/24", "198.18.2.0/24", "198.19.0.0/16",
		"fd00:198:18::1/128", "fd00:198:18::/64", "fd00:198:18::abcd/128", "198.18.0.1/32",
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestParseFileBadLine(t *testing.T) {
	_, err := ParseFile("testdata/bad.txt")
	want := `testdata/bad.txt:3: "198.18.0.300" is not an address or prefix`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 3 {
		t.Errorf("err is not a *ParseError at line 3: %#v", err)
	}
}

func TestParseFileMissing(t *testing.T) {
	if _, err := ParseFile("testdata/no-such-file"); err == nil || !strings.Contains(err.Error(), "no-such-file") {
		t.Errorf("err = %v, want one naming the file", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"198.18.0.1\n198.18.0.300\n", `f:2: "198.18.0.300" is not an address or prefix`},
		{"# c\n\n198.18.0.0/33 # too long\n", `f:3: "198.18.0.0/33" is not an address or prefix`},
		{"198.18.0.1 198.18.0.2\n", `f:1: "198.18.0.1 198.18.0.2" is not an address or prefix`},
		{"198.18.0.0 /24\n", `f:1: "198.18.0.0 /24" is not an address or prefix`},
		{"blocklist.example\n", `f:1: "blocklist.example" is not an address or prefix`},
		{"!198.18.0.1\n", `f:1: "!198.18.0.1" is not an address or prefix`},
		{"fe80::1%eth0\n", `f:1: "fe80::1%eth0" has a zone; table entries cannot`},
		{"fe80::1%eth0/64\n", `f:1: "fe80::1%eth0/64" has a zone; table entries cannot`},
		{"::ffff:198.18.0.1\n", `f:1: "::ffff:198.18.0.1" is IPv4-mapped IPv6 and never matches an IPv4 packet; write 198.18.0.1`},
		{"::ffff:198.18.0.0/120\n", `f:1: "::ffff:198.18.0.0/120" is IPv4-mapped IPv6 and never matches an IPv4 packet; write 198.18.0.0/24`},
		{"198.18.0.1\n" + strings.Repeat("#", MaxLineBytes+1) + "\n", `f:2: line longer than 4096 bytes`},
	} {
		_, err := Parse("f", strings.NewReader(tc.in))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q)\n got %v\nwant %s", tc.in, err, tc.want)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"198.18.0.5", "198.18.0.5/32"},
		{"198.18.0.5/24", "198.18.0.0/24"},
		{"  198.18.0.5/32\t# x", "198.18.0.5/32"},
		{"198.18.0.5\r", "198.18.0.5/32"},
		{"FD00:198:18::5", "fd00:198:18::5/128"},
		{"fd00:198:18::5/64", "fd00:198:18::/64"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"::/0", "::/0"},
		{"::ffff:0:0/95", "::fffe:0:0/95"}, // not IPv4-mapped once masked
	} {
		ps, err := Parse("f", strings.NewReader(tc.in))
		if err != nil || len(ps) != 1 || ps[0].String() != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want [%s]", tc.in, ps, err, tc.want)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	ps, err := Parse("f", strings.NewReader("# only comments\n\n   \n#\n"))
	if err != nil || len(ps) != 0 {
		t.Errorf("got %v, %v; want no entries", ps, err)
	}
}

// The bounds are constants far above what a test can afford to write, so
// this exercises them through a reader that claims a huge file.
func TestParseFileTooLarge(t *testing.T) {
	r := &repeatReader{line: []byte("# a comment line that goes on and on and on and on and on and on\n")}
	_, err := Parse("huge", r)
	want := "huge: larger than 536870912 bytes"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	if r.n > MaxFileBytes+MaxLineBytes+64*1024 {
		t.Errorf("read %d bytes, want about MaxFileBytes", r.n)
	}
}

func TestParseTooManyEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 4M lines")
	}
	r := &repeatReader{line: []byte("198.18.0.1\n")}
	_, err := Parse("many", r)
	want := "many:4194305: more than 4194304 entries"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

// repeatReader reads line over and over, forever.
type repeatReader struct {
	line []byte
	off  int
	n    int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.line[r.off:])
		n += c
		r.off = (r.off + c) % len(r.line)
	}
	r.n += n
	return n, nil
}

func TestParseAddrs(t *testing.T) {
	ps, err := ParseAddrs([]string{"198.18.0.1", "198.18.1.7/24", "fd00:198:18::1"})
	want := []netip.Prefix{
		netip.MustParsePrefix("198.18.0.1/32"),
		netip.MustParsePrefix("198.18.1.0/24"),
		netip.MustParsePrefix("fd00:198:18::1/128"),
	}
	if err != nil || !slices.Equal(ps, want) {
		t.Errorf("got %v, %v; want %v", ps, err, want)
	}
	ps, err = ParseAddrs([]string{"198.18.0.1", "198.18.0.256", "198.18.0.3"})
	if ps != nil || err == nil || err.Error() != `"198.18.0.256" is not an address or prefix` {
		t.Errorf("got %v, %v; want nil and an error naming 198.18.0.256", ps, err)
	}
}

// LoadFile makes the table New makes of what ParseFile returns, and
// refuses what they refuse.
func TestLoadFile(t *testing.T) {
	ps, err := ParseFile("testdata/blocklist.txt")
	if err != nil {
		t.Fatal(err)
	}
	want, err := New(Config{}, ps)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadFile(Config{Name: "bl"}, "testdata/blocklist.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name() != "bl" || !slices.Equal(got.Prefixes(), want.Prefixes()) {
		t.Errorf("LoadFile: %s %v, want %v", got.Name(), got.Prefixes(), want.Prefixes())
	}
	_, err = LoadFile(Config{}, "testdata/bad.txt")
	if want := `testdata/bad.txt:3: "198.18.0.300" is not an address or prefix`; err == nil || err.Error() != want {
		t.Errorf("bad file: err = %v, want %s", err, want)
	}
	_, err = LoadFile(Config{Limit: 7}, "testdata/blocklist.txt") // 8 distinct entries
	if !errors.Is(err, ErrLimit) {
		t.Errorf("over the limit: err = %v, want ErrLimit", err)
	}
	if _, err := Load(Config{Limit: -1}, "x", strings.NewReader("")); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative limit: err = %v, want ErrInvalid", err)
	}
	if _, err := LoadFile(Config{}, "testdata/missing.txt"); err == nil {
		t.Error("missing file: no error")
	}
}
