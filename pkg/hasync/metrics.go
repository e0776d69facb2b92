package hasync

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Node's Stats as Prometheus metrics, named
// statewall_sync_*; the daemon registers it. The peer label is the
// peer's certificate name once known (its address before), so both of a
// peer's links add up under one label; link is "out" (this node's
// changes to the peer) or "in" (the peer's to this node).
type Collector struct {
	n *Node
}

// NewCollector returns a Collector of n's metrics.
func NewCollector(n *Node) *Collector { return &Collector{n: n} }

var (
	descConnected = prometheus.NewDesc("statewall_sync_peers_connected",
		"Sync links in a session (streaming or in a bulk), by link (out: this node's changes, in: the peer's).", []string{"link"}, nil)
	descMessages = prometheus.NewDesc("statewall_sync_messages_total",
		"Sync frames, by peer and direction (sent, received).", []string{"peer", "direction"}, nil)
	descBytes = prometheus.NewDesc("statewall_sync_bytes_total",
		"Sync frame bytes (TLS overhead not counted), by peer and direction (sent, received).", []string{"peer", "direction"}, nil)
	descRecords = prometheus.NewDesc("statewall_sync_records_total",
		"Connection records: sent to the peer, or received and installed, merged, stale (nothing newer) or refused for a full table.", []string{"peer", "result"}, nil)
	descDeletes = prometheus.NewDesc("statewall_sync_deletes_total",
		"Connection deletes, by peer and direction (sent, received).", []string{"peer", "direction"}, nil)
	descRefused = prometheus.NewDesc("statewall_sync_refused_total",
		"Peer connections refused before a session, or sessions cut off, by reason (handshake, not_allowed, busy, version, garbage, oversized, replayed, malformed, dead).", []string{"reason"}, nil)
	descBulks = prometheus.NewDesc("statewall_sync_bulks_total",
		"Bulk transfers of the whole table completed, by peer and link (out: sent, in: received).", []string{"peer", "link"}, nil)
	descBulkSeconds = prometheus.NewDesc("statewall_sync_last_bulk_seconds",
		"How long the last bulk took, by peer and link.", []string{"peer", "link"}, nil)
	descResyncs = prometheus.NewDesc("statewall_sync_resyncs_total",
		"Bulks sent again because changes were lost, by peer and cause (dropped: events queue full; overflow: pending set full).", []string{"peer", "cause"}, nil)
	descLag = prometheus.NewDesc("statewall_sync_lag_seconds",
		"Sync lag: from a change of an entry on this node to the peer's ack of the frame that carried it.", []string{"peer"}, nil)
	descDefer = prometheus.NewDesc("statewall_sync_defer_total",
		"Deferred first packets (Announce), by result: deferred, acked, timed_out, failed, no_peer, overflow.", []string{"result"}, nil)
	descDeferLatency = prometheus.NewDesc("statewall_sync_defer_latency_seconds",
		"Deferrals acked: from Announce to the last peer's ack.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descMessages, descBytes, descRecords, descDeletes, descRefused,
		descBulks, descBulkSeconds, descResyncs, descLag, descDefer, descDeferLatency} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	var connected [2]int
	type pair struct{ peer, x string }
	sums := map[*prometheus.Desc]map[pair]uint64{}
	add := func(d *prometheus.Desc, peer, x string, v uint64) {
		if sums[d] == nil {
			sums[d] = map[pair]uint64{}
		}
		sums[d][pair{peer, x}] += v
	}
	refused := st.Refused
	for _, ps := range st.Peers {
		p := ps.label()
		if ps.State != StateDown && ps.State != StateConnecting {
			connected[ps.Direction]++
		}
		add(descMessages, p, "sent", ps.MessagesSent)
		add(descMessages, p, "received", ps.MessagesReceived)
		add(descBytes, p, "sent", ps.BytesSent)
		add(descBytes, p, "received", ps.BytesReceived)
		add(descRecords, p, "sent", ps.RecordsSent)
		add(descRecords, p, "installed", ps.Installed)
		add(descRecords, p, "merged", ps.Merged)
		add(descRecords, p, "stale", ps.Stale)
		add(descRecords, p, "full", ps.Full)
		add(descDeletes, p, "sent", ps.DeletesSent)
		add(descDeletes, p, "received", ps.DeletesReceived)
		add(descBulks, p, ps.Direction.String(), ps.Bulks)
		add(descResyncs, p, "dropped", ps.ResyncsDropped)
		add(descResyncs, p, "overflow", ps.ResyncsOverflow)
		refused = addReasons(refused, ps.CutOff)
		if ps.Bulks > 0 {
			ch <- prometheus.MustNewConstMetric(descBulkSeconds, prometheus.GaugeValue, ps.LastBulkSeconds, p, ps.Direction.String())
		}
	}
	for d, m := range sums {
		for k, v := range m {
			counter(d, v, k.peer, k.x)
		}
	}
	for dir := range connected {
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, float64(connected[dir]), Direction(dir).String())
	}
	for r, v := range refused.byReason() {
		counter(descRefused, v, Reason(r).String())
	}
	// Lag histograms straight from the links (Stats has only quantiles).
	lags := map[string]*histSum{}
	for _, l := range c.n.links() {
		if l.dir != Out {
			continue
		}
		ps := l.stats()
		h := lags[ps.label()]
		if h == nil {
			h = &histSum{}
			lags[ps.label()] = h
		}
		h.add(&l.c.lag)
	}
	for p, h := range lags {
		ch <- h.metric(descLag, p)
	}
	d := st.Defer
	counter(descDefer, d.Deferred, "deferred")
	counter(descDefer, d.Acked, "acked")
	counter(descDefer, d.TimedOut, "timed_out")
	counter(descDefer, d.Failed, "failed")
	counter(descDefer, d.NoPeer, "no_peer")
	counter(descDefer, d.Overflow, "overflow")
	var dl histSum
	dl.add(&c.n.defers.c.latency)
	ch <- dl.metric(descDeferLatency)
}

func addReasons(a, b Reasons) Reasons {
	return Reasons{
		Handshake: a.Handshake + b.Handshake, NotAllowed: a.NotAllowed + b.NotAllowed, Busy: a.Busy + b.Busy,
		Version: a.Version + b.Version, Garbage: a.Garbage + b.Garbage, Oversized: a.Oversized + b.Oversized,
		Replayed: a.Replayed + b.Replayed, Malformed: a.Malformed + b.Malformed, Dead: a.Dead + b.Dead,
	}
}

// byReason lists the counts in Reason order.
func (r Reasons) byReason() [numReasons]uint64 {
	return [numReasons]uint64{r.Handshake, r.NotAllowed, r.Busy, r.Version, r.Garbage, r.Oversized, r.Replayed, r.Malformed, r.Dead}
}

// histSum adds histograms up for one metric.
type histSum struct {
	counts [len(histBounds) + 1]uint64
	total  uint64
	sum    float64
}

func (s *histSum) add(h *histogram) {
	counts, total, sum := h.snapshot()
	for i, c := range counts {
		s.counts[i] += c
	}
	s.total += total
	s.sum += sum
}

func (s *histSum) metric(d *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(histBounds))
	var cum uint64
	for i, b := range histBounds {
		cum += s.counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, s.total, s.sum, buckets, labels...)
}
