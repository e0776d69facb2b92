package pflog

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestLogger(t *testing.T, cfg Config) *Logger {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func readFile(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readAll(t, f)
}

func TestLoggerFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log", "statewall")
	path := filepath.Join(dir, "pflog")
	l := newTestLogger(t, Config{Path: path})
	rs := sampleRecords(t)
	big := rec(t, "block in on eth1 rule 9", "udp 198.18.1.2:5000 > 198.18.2.2:6000 len=1000")
	big.Time = time.Time{} // Log reads the clock
	rs = append(rs, big)
	before := time.Now()
	for i := range rs {
		if !l.Log(&rs[i]) {
			t.Fatalf("Log %d refused", i)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Logged != uint64(len(rs)) || st.Written != uint64(len(rs)) || st.Dropped != 0 || st.WriteErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	got := readFile(t, path)
	if len(got) != len(rs) {
		t.Fatalf("file holds %d records, want %d", len(got), len(rs))
	}
	last := got[len(got)-1]
	if len(last.Packet) != DefaultSnapLen || last.Length != len(big.Packet) {
		t.Errorf("big packet: kept %d of %d bytes, want %d of %d", len(last.Packet), last.Length, DefaultSnapLen, len(big.Packet))
	}
	if last.Time.Before(before.Truncate(time.Microsecond)) || last.Time.After(time.Now()) {
		t.Errorf("zero Time stamped %v, want about %v", last.Time, before)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{path, 0o600}, {dir, 0o700 | os.ModeDir}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	lines := tcpdumpLines(t, path, nil)
	if len(lines) != len(rs) {
		t.Fatalf("tcpdump printed %d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	// The packet was cut at the snap length, but tcpdump still sees its
	// real length.
	if want := "rule 9/0(match): block in on eth1: 198.18.1.2.5000 > 198.18.2.2.6000: UDP, length 1000"; lines[len(lines)-1] != want {
		t.Errorf("tcpdump\n got %s\nwant %s", lines[len(lines)-1], want)
	}
}

func TestLoggerRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pflog")
	r := rec(t, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	recLen := RecordLen(&r)
	// Three records a file.
	l := newTestLogger(t, Config{Path: path, MaxSize: int64(FileHeaderLen + 3*recLen), Keep: 2})
	const n = 20
	for i := range n {
		r.RuleNr = uint32(i)
		l.Log(&r)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Written != n || st.Rotations != 6 || st.WriteErrors != 0 {
		t.Errorf("stats %+v, want %d written, 6 rotations", st, n)
	}
	// 20 records: files of 3, the last with 2. Kept: FILE (18, 19),
	// FILE.1 (15..17), FILE.2 (12..14).
	for i, want := range [][]uint32{{18, 19}, {15, 16, 17}, {12, 13, 14}} {
		p := path
		if i > 0 {
			p += "." + string(rune('0'+i))
		}
		got := readFile(t, p)
		var nrs []uint32
		for _, g := range got {
			nrs = append(nrs, g.RuleNr)
		}
		if len(nrs) != len(want) || nrs[0] != want[0] || nrs[len(nrs)-1] != want[len(want)-1] {
			t.Errorf("%s: rules %v, want %v", p, nrs, want)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode() != 0o600 || fi.Size() > int64(FileHeaderLen+3*recLen) {
			t.Errorf("%s: %v %v", p, fi.Mode(), err)
		}
		if lines := tcpdumpLines(t, p, nil); len(lines) != len(want) {
			t.Errorf("tcpdump -r %s: %d lines, want %d", p, len(lines), len(want))
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("%s.3 exists (Keep 2): %v", path, err)
	}
}

func TestLoggerKeepsPreviousFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pflog")
	if err := os.WriteFile(path, []byte("earlier run"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newTestLogger(t, Config{Path: path})
	l.Close()
	if b, err := os.ReadFile(path + ".1"); err != nil || string(b) != "earlier run" {
		t.Errorf("%s.1: %q %v", path, b, err)
	}
	if got := readFile(t, path); len(got) != 0 {
		t.Errorf("new file holds %d records", len(got))
	}
}

// TestRingFullDrops fills the ring with no writer running: Log returns
// false at once and counts; what was accepted is all written later.
func TestRingFullDrops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pflog")
	l, err := newLogger(Config{Path: path, RingSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	r := rec(t, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	accepted := 0
	for range 13 {
		if l.Log(&r) {
			accepted++
		}
	}
	if st := l.Stats(); accepted != 8 || st.Logged != 8 || st.Dropped != 5 {
		t.Errorf("accepted %d, stats %+v; want 8 logged, 5 dropped", accepted, st)
	}
	go l.run()
	l.Close()
	if l.Log(&r) {
		t.Error("Log after Close accepted")
	}
	if st := l.Stats(); st.Written != 8 || st.Dropped != 6 {
		t.Errorf("stats %+v; want 8 written, 6 dropped", st)
	}
	if got := readFile(t, path); len(got) != 8 {
		t.Errorf("file holds %d records, want 8", len(got))
	}
}

// TestSlowSubscriber: a subscriber that never reads loses records, counted,
// while the file and a subscriber that keeps up get every one.
func TestSlowSubscriber(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pflog")
	l := newTestLogger(t, Config{Path: path, RingSize: 4096, SubscriberBuffer: 4096})
	slow := l.Subscribe()
	fast := l.Subscribe()
	var fastRead atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		rd, err := NewReader(fast)
		if err != nil {
			t.Error(err)
			return
		}
		var r Record
		for rd.Next(&r) == nil {
			fastRead.Add(1)
		}
	}()
	if st := l.Stats(); st.Subscribers != 2 {
		t.Errorf("%d subscribers", st.Subscribers)
	}
	r := rec(t, "pass out on eth0 rule 7", "udp 198.18.2.2:5000 > 198.18.1.2:6000 len=12")
	const n = 3000
	for i := range n {
		r.RuleNr = uint32(i)
		if !l.Log(&r) {
			t.Fatalf("Log %d refused", i)
		}
		// Pace the producer to the fast reader (its buffer holds about
		// 30 records): it must lose nothing.
		for i%10 == 9 && fastRead.Load() < int64(i+1) {
			time.Sleep(10 * time.Microsecond)
		}
	}
	l.Close()
	<-done
	st := l.Stats()
	if st.Written != n {
		t.Errorf("file got %d records, want %d", st.Written, n)
	}
	if fastRead.Load() != n || fast.Dropped() != 0 {
		t.Errorf("fast subscriber read %d and dropped %d of %d", fastRead.Load(), fast.Dropped(), n)
	}
	fits := uint64((4096 - FileHeaderLen) / RecordLen(&r))
	if slow.Dropped() != n-fits || st.SubscriberDrops != slow.Dropped() {
		t.Errorf("slow subscriber dropped %d, want %d; total %d", slow.Dropped(), n-fits, st.SubscriberDrops)
	}
	// The slow one still reads a well-formed stream of what fitted.
	if got := readAll(t, slow); uint64(len(got)) != fits {
		t.Errorf("slow subscriber read %d records, want %d", len(got), fits)
	}
}

// TestSubscriptionTcpdump pipes a live subscription into tcpdump -r -.
func TestSubscriptionTcpdump(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed")
	}
	l := newTestLogger(t, Config{})
	sub := l.Subscribe()
	rs := sampleRecords(t)
	go func() {
		for i := range rs {
			l.Log(&rs[i])
		}
		l.Close()
	}()
	lines := tcpdumpLines(t, "-", sub)
	if len(lines) != len(samples) {
		t.Fatalf("tcpdump printed %d lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, s := range samples {
		if lines[i] != s.tcpdump {
			t.Errorf("tcpdump\n got %s\nwant %s", lines[i], s.tcpdump)
		}
	}
}

func TestSubscriptionClose(t *testing.T) {
	l := newTestLogger(t, Config{})
	sub := l.Subscribe()
	var hdr [FileHeaderLen]byte
	if _, err := io.ReadFull(sub, hdr[:]); err != nil || !bytes.Equal(hdr[:], AppendFileHeader(nil)) {
		t.Fatalf("header %x %v", hdr, err)
	}
	errc := make(chan error)
	go func() {
		_, err := sub.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond) // let Read block
	sub.Close()
	if err := <-errc; err != io.EOF {
		t.Errorf("Read after Close: %v", err)
	}
	if st := l.Stats(); st.Subscribers != 0 {
		t.Errorf("%d subscribers after Close", st.Subscribers)
	}
	r := rec(t, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	l.Log(&r) // nobody to deliver to
	l.Close()
	// Subscribing to a closed Logger gives a header and EOF.
	if got := readAll(t, l.Subscribe()); len(got) != 0 {
		t.Errorf("closed logger's subscription has %d records", len(got))
	}
}

// TestLoggerWriteError: a failed write is counted, and the next file keeps
// the failed one as FILE.1.
func TestLoggerWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pflog")
	l, err := newLogger(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	r := rec(t, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	l.file.f.Close() // writes now fail with "file already closed"
	l.Log(&r)
	l.drain()
	if st := l.Stats(); st.WriteErrors != 1 || st.Written != 0 {
		t.Errorf("stats %+v, want 1 write error", st)
	}
	l.Log(&r)
	l.drain() // within retryAfter: not retried, lost
	l.file.retryAt = time.Time{}
	l.Log(&r)
	l.drain()
	if st := l.Stats(); st.WriteErrors != 1 || st.Written != 1 {
		t.Errorf("stats %+v, want 1 write error, 1 written", st)
	}
	go l.run()
	l.Close()
	if got := readFile(t, path); len(got) != 1 {
		t.Errorf("new file holds %d records", len(got))
	}
	if got := readFile(t, path+".1"); len(got) != 0 {
		t.Errorf("failed file holds %d records", len(got))
	}
}

// TestConcurrentLog: producers on several goroutines; every record arrives,
// each producer's in its order, and a producer may reuse its buffer as soon
// as Log returns.
func TestConcurrentLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pflog")
	const producers, each = 8, 4000
	l := newTestLogger(t, Config{Path: path, RingSize: producers * each})
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			r := rec(t, "pass out on eth0 rule 1", "udp 198.18.2.2:5000 > 198.18.1.2:6000 len=8")
			r.RuleNr = uint32(p)
			for i := range each {
				binary.BigEndian.PutUint32(r.Packet[28:], uint32(i))
				if !l.Log(&r) {
					t.Errorf("producer %d: Log %d refused", p, i)
					return
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	next := make([]uint32, producers)
	got := readFile(t, path)
	if len(got) != producers*each {
		t.Fatalf("file holds %d records, want %d", len(got), producers*each)
	}
	for _, g := range got {
		p, i := g.RuleNr, binary.BigEndian.Uint32(g.Packet[28:])
		if i != next[p] {
			t.Fatalf("producer %d: record %d after %d", p, i, next[p]-1)
		}
		next[p]++
	}
}

func TestNoAllocs(t *testing.T) {
	l := newTestLogger(t, Config{Path: filepath.Join(t.TempDir(), "pflog"), RingSize: 1 << 16})
	r := rec(t, "block in on eth1 rule 3", "tcp 198.18.1.2:40000 > 198.18.2.2:80 S")
	for _, tt := range []struct {
		name string
		fn   func()
	}{
		{"Log", func() { l.Log(&r) }},
		{"LogNow", func() { r2 := r; r2.Time = time.Time{}; l.Log(&r2) }},
		{"AppendRecord", func() { buf := make([]byte, 0, 256); AppendRecord(buf, &r) }},
		{"AppendFormat", func() { buf := make([]byte, 0, 256); AppendFormat(buf, &r) }},
	} {
		if n := testing.AllocsPerRun(1000, tt.fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tt.name, n)
		}
	}
	// A full ring drops without allocating too.
	full, err := newLogger(Config{RingSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { full.Log(&r) }); n != 0 {
		t.Errorf("Log on a full ring: %v allocs", n)
	}
	var many []Record
	for range 50 {
		many = append(many, sampleRecords(t)...)
	}
	rd, err := NewReader(bytes.NewReader(writeFile(t, many)))
	if err != nil {
		t.Fatal(err)
	}
	var out Record
	if n := testing.AllocsPerRun(200, func() {
		if err := rd.Next(&out); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Reader.Next: %v allocs", n)
	}
}
