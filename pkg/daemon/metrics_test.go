package daemon

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/packet"
	"github.com/statewall/statewall/pkg/rules"
)

// benchDaemon is a daemon that is not running (nothing needs root), with n
// UDP connections from 198.18.0.0/15 to one server, each answered, in its
// table. It returns the daemon and a packet of each connection, in the
// reply direction.
func benchDaemon(tb testing.TB, n int) (*Daemon, []packet.Packet) {
	tb.Helper()
	f := filepath.Join(tb.TempDir(), "bench.rules")
	if err := os.WriteFile(f, fmt.Appendf(nil, "set limit states %d\npass proto udp\n", 2*n), 0o644); err != nil {
		tb.Fatal(err)
	}
	d, err := New(Config{RulesFile: f, Clock: &manualClock{}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	now := d.now()
	server := netip.MustParseAddr("198.19.255.254")
	replies := make([]packet.Packet, n)
	var dec engine.Decision
	for i := range n {
		client := netip.AddrFrom4([4]byte{198, 18, byte(i >> 16), byte(i >> 8)})
		q := udpConnPacket(client, server, uint16(1024+i&0xff), 53)
		d.stateful.DecideInto(&dec, &q, rules.DirUnknown, now)
		replies[i] = udpConnPacket(server, client, 53, uint16(1024+i&0xff))
		d.stateful.DecideInto(&dec, &replies[i], rules.DirUnknown, now)
		if dec.Verdict != engine.Pass {
			tb.Fatalf("connection %d: %v", i, dec)
		}
	}
	if got := d.table.Len(); got != n {
		tb.Fatalf("%d entries, want %d", got, n)
	}
	return d, replies
}

// manualClock is a clock the test moves by hand.
type manualClock struct{ ns atomic.Int64 }

func (c *manualClock) Monotonic() int64        { return c.ns.Load() }
func (c *manualClock) Wall() time.Time         { return time.Unix(0, c.ns.Load()) }
func (c *manualClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func udpConnPacket(src, dst netip.Addr, sport, dport uint16) packet.Packet {
	return packet.Packet{Kind: packet.KindOK, IPVersion: 4, IPHdrLen: 20, IPLen: 36, Proto: packet.ProtoUDP,
		Src: src, Dst: dst, SrcPort: sport, DstPort: dport, L4Len: 16, UDPLen: 16, PayloadLen: 8}
}

// scrapeOnce serves one /metrics request and returns the body.
func scrapeOnce(tb testing.TB, h http.Handler) string {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		tb.Fatalf("scrape: %d %s", rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// TestMetricsConnectionCounts: the connections by protocol and state come
// from the table's counters, and agree with a walk of the table; entries
// that expired are not counted, reaped or not.
func TestMetricsConnectionCounts(t *testing.T) {
	d, _ := benchDaemon(t, 300)
	body := scrapeOnce(t, d.m.handler())
	if !strings.Contains(body, `statewall_conntrack_connections{proto="udp",state="REPLIED"} 300`) ||
		!strings.Contains(body, "statewall_conntrack_entries 300") {
		t.Fatalf("scrape of 300 replied UDP connections:\n%s", grepLines(body, "conntrack_"))
	}
	d.cfg.Clock.(*manualClock).advance(31 * time.Second) // past UDP's 30 s
	body = scrapeOnce(t, d.m.handler())
	if strings.Contains(body, "statewall_conntrack_connections{") || !strings.Contains(body, "statewall_conntrack_entries 0") {
		t.Errorf("after every entry expired:\n%s", grepLines(body, "conntrack_"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMetricsServerLimits: the endpoint closes idle connections, refuses
// more concurrent scrapes than metricsInFlight, and bounds a request's
// reading and writing.
func TestMetricsServerLimits(t *testing.T) {
	d, _ := benchDaemon(t, 10)
	srv := d.m.newServer()
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Fatalf("metrics server without timeouts: %+v", srv)
	}
	// A short idle timeout, to see a keep-alive connection closed.
	srv.IdleTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1<<20)
	var got []byte
	var rerr error
	for rerr == nil {
		var n int
		n, rerr = c.Read(buf)
		got = append(got, buf[:n]...)
	}
	if !strings.HasPrefix(string(got), "HTTP/1.1 200") {
		t.Fatalf("answer: %.100q", got)
	}
	if ne, ok := rerr.(net.Error); ok && ne.Timeout() {
		t.Error("the server kept an idle keep-alive connection open for 10 s")
	}

	// In-flight limit: block the collectors, fill the slots, and one
	// more scrape is refused at once.
	block := make(chan struct{})
	var inside atomic.Int32
	d.m.reg.MustRegister(blockingCollector{block, &inside})
	h := d.m.handler()
	var wg sync.WaitGroup
	for range metricsInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		}()
	}
	if !waitFor(5*time.Second, func() bool { return inside.Load() == metricsInFlight }) {
		t.Fatalf("%d scrapes in the collector, want %d", inside.Load(), metricsInFlight)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	close(block)
	wg.Wait()
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("scrape %d while %d run: status %d, want 503", metricsInFlight+1, metricsInFlight, rec.Code)
	}
}

type blockingCollector struct {
	block  chan struct{}
	inside *atomic.Int32
}

func (blockingCollector) Describe(chan<- *prometheus.Desc) {}
func (c blockingCollector) Collect(chan<- prometheus.Metric) {
	c.inside.Add(1)
	<-c.block
}

// BenchmarkMetricsScrape: one scrape of a table of 1M connections, against
// a walk of the table (what a scrape did before the counts), side by
// side; and the time of known-connection decisions while a scraper runs
// back to back (p99 and p99.99 as custom metrics), for each.
func BenchmarkMetricsScrape(b *testing.B) {
	d, replies := benchDaemon(b, 1_000_000)
	h := d.m.handler()
	walk := func() {
		counts := map[string]int{}
		d.table.Walk(d.now(), func(e conntrack.EntryInfo) bool {
			counts[e.StateName()]++
			return true
		})
	}
	b.Run("scrape", func(b *testing.B) {
		for b.Loop() {
			scrapeOnce(b, h)
		}
	})
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			walk()
		}
	})
	for _, sc := range []struct {
		name   string
		scrape func()
	}{{"decide-while-scraping", func() { scrapeOnce(b, h) }}, {"decide-while-walking", walk}, {"decide-alone", nil}} {
		b.Run(sc.name, func(b *testing.B) {
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if sc.scrape != nil {
						sc.scrape()
					} else {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			lat := make([]time.Duration, 0, 1<<20)
			var dec engine.Decision
			now := d.now()
			i := 0
			for b.Loop() {
				p := &replies[(i*7919)%len(replies)]
				i++
				t0 := time.Now()
				d.stateful.DecideInto(&dec, p, rules.DirUnknown, now)
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(t0))
				}
			}
			close(stop)
			<-done
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				b.ReportMetric(float64(lat[len(lat)*9999/10000].Nanoseconds()), "p99.99-ns")
			}
		})
	}
}
