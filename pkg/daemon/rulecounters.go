package daemon

import (
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/statewall/statewall/pkg/engine"
	"github.com/statewall/statewall/pkg/rules"
)

// Per-rule counters (`statewall rules`, pfctl -vsr): what is counted and
// what it costs is engine.Counters'. The daemon gives every queue's
// worker its own lane (the worker index), counts each packet's enforced
// decision in handle, and swaps the counted ruleset in bindLocked before
// the engines get it, so that a packet decided with the old rules still
// finds them (engine.Counters: nothing is lost unless a worker stalls
// across two swaps).

// RuleCounters is what `statewall rules` shows: the rules in force, in
// canonical form, with their counters.
type RuleCounters struct {
	Rules []RuleStat `json:"rules"`
	// Lost counts packets decided by a ruleset two reloads old by the
	// time they were counted: counted for no rule.
	Lost uint64 `json:"lost,omitempty"`
}

// RuleStat is one rule's line and counters. Evaluations are the rule
// evaluations that reached it in file order (every one that no earlier
// rule decided: pf's count without skip steps); Packets and Bytes those it
// decided; States the connection-table entries made for the packets it
// passed. Packets that passed as part of a known connection count for no
// rule. See engine.Counters.
type RuleStat struct {
	Number int    `json:"number"` // "@N", the rule's index
	File   string `json:"file,omitempty"`
	Line   int    `json:"line"`
	// Rule is the rule in canonical form; an antispoof rule as Bind
	// expanded it, with its statement after "  # " (check --expand).
	Rule  string `json:"rule"`
	Label string `json:"label"`
	engine.RuleCount
}

// countDecision counts dec, of a packet of n bytes at dir, for worker w.
// It runs on the packet path: no allocation, no write another worker
// makes.
func (d *Daemon) countDecision(w int, dec *engine.Decision, dir rules.Dir, n int) {
	d.m.rules.Count(w, dec, dir, n)
}

// countRules makes rs the counted ruleset: call it before the engines get
// rs. Precondition: reloadMu is held.
func (d *Daemon) countRules(rs *rules.Ruleset) {
	if d.m != nil && d.m.rules != nil {
		d.m.rules.SetRules(rs)
	}
}

// RuleCounters returns the rules in force with their counters.
func (d *Daemon) RuleCounters() *RuleCounters {
	s := d.m.rules.Snapshot()
	out := &RuleCounters{Rules: []RuleStat{}, Lost: s.Lost}
	if s.Rules == nil {
		return out
	}
	lines := strings.Split(strings.TrimSuffix(s.Rules.Expanded(), "\n"), "\n")
	for i := range s.Rules.Rules {
		r := &s.Rules.Rules[i]
		text := r.String()
		if i < len(lines) {
			// "@N TEXT": Expanded's line for the rule.
			if _, t, ok := strings.Cut(lines[i], " "); ok {
				text = t
			}
		}
		out.Rules = append(out.Rules, RuleStat{Number: r.Index, File: r.File, Line: r.Line, Rule: text, Label: r.Label, RuleCount: s.Counts[i]})
	}
	return out
}

// ruleCollector exposes the per-rule counters by label: rules without a
// label add up under label="", so the series are as many as the labels
// the rulesets ever had, not the rules. A label's counts never go back: a
// rule that a reload changed or dropped keeps what it counted in its
// label's total.
type ruleCollector struct{ c *engine.Counters }

var (
	descRulePackets = prometheus.NewDesc("statewall_rule_packets_total", "Packets (rule evaluations) decided by the rules with this label; packets of known connections count for no rule.", []string{"label"}, nil)
	descRuleBytes   = prometheus.NewDesc("statewall_rule_bytes_total", "Bytes (whole IP packets) decided by the rules with this label.", []string{"label"}, nil)
	descRuleStates  = prometheus.NewDesc("statewall_rule_states_total", "Connection-table entries made for packets the rules with this label passed.", []string{"label"}, nil)
)

func (c ruleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRulePackets
	ch <- descRuleBytes
	ch <- descRuleStates
}

func (c ruleCollector) Collect(ch chan<- prometheus.Metric) {
	byLabel := c.c.ByLabel()
	labels := make([]string, 0, len(byLabel))
	for l := range byLabel {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		n := byLabel[l]
		ch <- prometheus.MustNewConstMetric(descRulePackets, prometheus.CounterValue, float64(n.Packets), l)
		ch <- prometheus.MustNewConstMetric(descRuleBytes, prometheus.CounterValue, float64(n.Bytes), l)
		ch <- prometheus.MustNewConstMetric(descRuleStates, prometheus.CounterValue, float64(n.States), l)
	}
}
