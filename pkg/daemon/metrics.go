package daemon

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/statewall/statewall/pkg/conntrack"
	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/pflog"
)

// causes names engine.Cause values for the "reason" label.
var causes = [...]string{
	engine.CauseRule:      "rule",
	engine.CauseDefault:   "default",
	engine.CauseMalformed: "malformed",
	engine.CauseNotIP:     "not_ip",
	engine.CauseState:     "state",
	engine.CauseInvalid:   "invalid",
	engine.CauseTableFull: "table_full",
	engine.CauseUntracked: "untracked",
	engine.CauseFragment:  "fragment",
	engine.CauseLimit:     "limit",
	engine.CauseOverload:  "overload",
}

// metrics are the daemon's Prometheus metrics, on a registry of their own.
// The per-packet counters are resolved to concrete Counters once, so the
// packet path does an array index and an atomic add, never a label lookup.
type metrics struct {
	reg          *prometheus.Registry
	packets      [2][len(causes)]prometheus.Counter // [verdict][cause]
	bytes        [2][len(causes)]prometheus.Counter
	decodeErrors prometheus.Counter
	latency      prometheus.Histogram
	disagree     [3][5]prometheus.Counter // [agreement][ct label]
	reloads      *prometheus.CounterVec
	rules        *engine.Counters // per rule, by worker (rulecounters.go)
}

func newMetrics(d *Daemon) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	mode := prometheus.Labels{"mode": d.cfg.Mode.String()}
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "statewall_packets_total", Help: "Packets decided, by verdict and by what decided them.", ConstLabels: mode,
	}, []string{"verdict", "reason"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "statewall_bytes_total", Help: "Bytes (whole IP packets) decided, by verdict and by what decided them.", ConstLabels: mode,
	}, []string{"verdict", "reason"})
	for v := range 2 {
		for c, name := range causes {
			vs := engine.Verdict(v).String()
			m.packets[v][c] = packets.WithLabelValues(vs, name)
			m.bytes[v][c] = bytes.WithLabelValues(vs, name)
		}
	}
	m.decodeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "statewall_decode_errors_total", Help: "Queued packets that could not be decoded (truncated, malformed).",
	})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "statewall_decision_seconds",
		Help:    "Time from a packet's arrival at the handler to its verdict, for one packet in 16 (timing every one would cost as much as a decision).",
		Buckets: prometheus.ExponentialBuckets(100e-9, 2, 16), // 100 ns .. 3.3 ms
	})
	disagree := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "statewall_shadow_disagreements_total",
		Help: "Shadow mode: packets whose stateless verdict differs from the enforced stateful one, by which side passes and the packet's ct label.",
	}, []string{"kind", "ct"})
	for _, a := range []engine.Agreement{engine.OnlyStatefulPasses, engine.OnlyStatelessPasses} {
		for l := conntrack.LabelNew; l <= conntrack.LabelUntracked; l++ {
			m.disagree[a][l] = disagree.WithLabelValues(agreementLabel(a), l.String())
		}
	}
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "statewall_reloads_total", Help: "Ruleset reloads, by result.",
	}, []string{"result"})
	logStat := func(f func(pflog.Stats) uint64) func() float64 {
		return func() float64 {
			if pl := d.plogReady.Load(); pl != nil {
				return float64(f(pl.Stats()))
			}
			return 0
		}
	}
	logged := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "statewall_log_records_total", Help: "Packets logged by `log` rules (records accepted by the packet log).",
	}, logStat(func(s pflog.Stats) uint64 { return s.Logged }))
	logDropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "statewall_log_dropped_total", Help: "Log records dropped because the packet log's buffer was full (the packets were decided as usual).",
	}, logStat(func(s pflog.Stats) uint64 { return s.Dropped }))
	replies := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "statewall_replies_sent_total", Help: "Answers (TCP RST, ICMP unreachable) sent for packets that block return rules blocked.",
	}, func() float64 {
		if rj := d.rejReady.Load(); rj != nil {
			return float64(rj.Stats().Sent)
		}
		return 0
	})
	srcNodes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "statewall_source_nodes", Help: "Source nodes of the stateful tracking options (max-src-*), idle ones awaiting src.track included.",
	}, func() float64 {
		if src := d.stateful.Sources(); src != nil {
			return float64(src.Stats().Nodes)
		}
		return 0
	})
	overloads := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "statewall_source_overloads_total", Help: "Sources put into an overload table (max-src-conn or max-src-conn-rate exceeded).",
	}, func() float64 {
		if src := d.stateful.Sources(); src != nil {
			return float64(src.Stats().Overloads)
		}
		return 0
	})
	m.rules = engine.NewCounters(d.stateful.Rules(), len(d.workers))
	m.reg.MustRegister(packets, bytes, m.decodeErrors, m.latency, disagree, m.reloads,
		&tableCollector{d: d}, &queueCollector{d: d}, logged, logDropped, replies, srcNodes, overloads)
	m.reg.MustRegister(ruleCollector{m.rules})
	// The Go runtime, the process (CPU, memory, file descriptors) and the
	// build (module version, VCS revision), as every Go exporter has them.
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector())
	return m
}

func agreementLabel(a engine.Agreement) string {
	if a == engine.OnlyStatefulPasses {
		return "only_stateful_passes"
	}
	return "only_stateless_passes"
}

func (m *metrics) count(dec engine.Decision, n int) {
	c := int(dec.Cause)
	if c >= len(causes) {
		c = int(engine.CauseDefault)
	}
	v := dec.Verdict & 1
	m.packets[v][c].Inc()
	m.bytes[v][c].Add(float64(n))
}

func (m *metrics) disagreement(a engine.Agreement, stateful engine.Decision) {
	l := stateful.CT.Label
	if l > conntrack.LabelUntracked {
		l = conntrack.LabelInvalid
	}
	if !stateful.Tracked {
		l = conntrack.LabelInvalid
	}
	m.disagree[a][l].Inc()
}

// Limits of the metrics endpoint. A scrape is cheap (no walk of the
// table), but the endpoint has no authentication: whoever reaches it must
// not be able to hold the daemon's connections, goroutines or CPU. At most
// metricsInFlight scrapes run at once (more get 503), a scrape that takes
// longer than metricsScrapeTimeout gets 503, and a connection is closed
// when it sends its request too slowly, idles between requests, or does
// not read its answer.
const (
	metricsInFlight      = 4
	metricsScrapeTimeout = 10 * time.Second
	metricsReadTimeout   = 10 * time.Second
	metricsWriteTimeout  = 30 * time.Second
	metricsIdleTimeout   = 60 * time.Second
)

func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: metricsInFlight,
		Timeout:             metricsScrapeTimeout,
	}))
	return mux
}

// newServer is the HTTP server of the metrics endpoint, with the
// limits above.
func (m *metrics) newServer() *http.Server {
	return &http.Server{
		Handler:           m.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       metricsReadTimeout,
		WriteTimeout:      metricsWriteTimeout,
		IdleTimeout:       metricsIdleTimeout,
		MaxHeaderBytes:    8 << 10,
	}
}

// tableCollector reports the connection table at scrape time: its counters,
// and the connections by protocol and state, which the table keeps counted
// as entries change (conntrack.Table.Counts): a scrape locks each shard for
// a copy of its counters, never walks the table, and so never stalls a
// queue's packets for long, whatever the table's size.
type tableCollector struct{ d *Daemon }

var (
	descConns    = prometheus.NewDesc("statewall_conntrack_connections", "Tracked connections by protocol and state.", []string{"proto", "state"}, nil)
	descEntries  = prometheus.NewDesc("statewall_conntrack_entries", "Entries in the connection table.", nil, nil)
	descLimit    = prometheus.NewDesc("statewall_conntrack_limit", "Most entries the table holds (set limit states).", nil, nil)
	descCTEvents = prometheus.NewDesc("statewall_conntrack_events_total", "Connection-table events: inserted, evicted (early drop of an unassured entry when full), refused (table full), expired, deleted (RST, reopen), invalid packets.", []string{"event"}, nil)
	descQueue    = prometheus.NewDesc("statewall_queue_packets_total", "Packets statewall received per NFQUEUE queue.", []string{"queue"}, nil)
	descVerdicts = prometheus.NewDesc("statewall_queue_verdicts_total", "Verdicts sent per NFQUEUE queue, by verdict (accept, drop): they add up to the packets received, less those in flight.", []string{"queue", "verdict"}, nil)
	descENOBUFS  = prometheus.NewDesc("statewall_queue_enobufs_total", "Receive-buffer overruns per queue: packets the kernel could not hand to statewall (passed with fail-open, else dropped).", []string{"queue"}, nil)
	descQErrors  = prometheus.NewDesc("statewall_queue_errors_total", "Survived errors per queue.", []string{"queue"}, nil)
)

func (c *tableCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descConns
	ch <- descEntries
	ch <- descLimit
	ch <- descCTEvents
}

func (c *tableCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.d.table
	st := c.d.tableStats()
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(descLimit, prometheus.GaugeValue, float64(c.d.limit))
	for _, e := range []struct {
		n string
		v uint64
	}{{"inserted", st.Inserted}, {"evicted", st.Evicted}, {"refused", st.Refused}, {"expired", st.Expired}, {"deleted", st.Deleted}, {"invalid", st.Invalid}} {
		ch <- prometheus.MustNewConstMetric(descCTEvents, prometheus.CounterValue, float64(e.v), e.n)
	}
	for _, n := range t.Counts(c.d.now()) {
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(n.N), n.Proto.String(), n.State)
	}
}

type queueCollector struct{ d *Daemon }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueue
	ch <- descVerdicts
	ch <- descENOBUFS
	ch <- descQErrors
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.d.reader.Load()
	if r == nil {
		return
	}
	for _, s := range r.Stats() {
		q := strconv.Itoa(int(s.Queue))
		ch <- prometheus.MustNewConstMetric(descQueue, prometheus.CounterValue, float64(s.Packets), q)
		ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.CounterValue, float64(s.Accepted), q, "accept")
		ch <- prometheus.MustNewConstMetric(descVerdicts, prometheus.CounterValue, float64(s.Dropped), q, "drop")
		ch <- prometheus.MustNewConstMetric(descENOBUFS, prometheus.CounterValue, float64(s.ENOBUFS), q)
		ch <- prometheus.MustNewConstMetric(descQErrors, prometheus.CounterValue, float64(s.Errors), q)
	}
}
