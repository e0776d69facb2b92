package engine

import (
	"strconv"
	"sync"

	"github.com/statewall/statewall/pkg/rules"
)

// Tags. Some rules need their connections to remember them: `log (all)`
// logs every packet of a connection the rule created, and the stateful
// tracking options (max, max-src-conn, ...) count a rule's states and must
// hear when each goes. A conntrack entry has one byte for that (its mark):
// the rule's tag, 1-255. A tag stays with a rule across reloads while the
// rule is unchanged (same text, same place among equal rules), so the
// counts of a rule that a reload did not touch go on; a rule that is new
// gets a tag no current rule has. With more than 255 such rules the rest
// go untagged: their log (all) and limits do not apply (Lint says so).

// MaxTags is how many rules may carry a tag at once.
const MaxTags = 255

// tagging is a ruleset with its tags, swapped in as one.
type tagging struct {
	rs    *rules.Ruleset
	tagOf []uint8                  // by rule index - 1; 0: no tag
	rule  [MaxTags + 1]*rules.Rule // by tag: the rule in rs, nil if none
	// limited: the tag's rule has stateful tracking options.
	limited [MaxTags + 1]bool
}

// tagRegistry assigns tags. Its lock is taken only when rules are set.
type tagRegistry struct {
	mu     sync.Mutex
	byText map[string]uint8
	text   [MaxTags + 1]string
}

// needsTag reports whether r's connections must remember it.
func needsTag(r *rules.Rule) bool { return r.LogAll || r.Limits.Any() }

// tag builds rs's tagging: unchanged rules keep their tags; tags of rules
// that are gone are given to new ones only when no free tag is left.
func (g *tagRegistry) tag(rs *rules.Ruleset, busy func(uint8) bool) *tagging {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.byText == nil {
		g.byText = map[string]uint8{}
	}
	tg := &tagging{rs: rs}
	if rs == nil {
		return tg
	}
	tg.tagOf = make([]uint8, len(rs.Rules))
	seen := map[string]int{}
	texts := make([]string, len(rs.Rules))
	var fresh []int
	for i := range rs.Rules {
		r := &rs.Rules[i]
		if !needsTag(r) {
			continue
		}
		s := r.String()
		seen[s]++
		s += "#" + strconv.Itoa(seen[s])
		texts[i] = s
		if t, ok := g.byText[s]; ok && tg.rule[t] == nil {
			tg.tagOf[i], tg.rule[t] = t, r
			continue
		}
		fresh = append(fresh, i)
	}
	for _, i := range fresh {
		t := g.free(tg, busy)
		if t == 0 {
			continue
		}
		if old := g.text[t]; old != "" {
			delete(g.byText, old)
		}
		g.byText[texts[i]], g.text[t] = t, texts[i]
		tg.tagOf[i], tg.rule[t] = t, &rs.Rules[i]
	}
	for t, r := range tg.rule {
		tg.limited[t] = r != nil && r.Limits.Any()
	}
	return tg
}

// free returns a tag no rule of tg has, preferring one never given out,
// then one whose connections are all gone (busy says which are not); 0
// when all are taken.
func (g *tagRegistry) free(tg *tagging, busy func(uint8) bool) uint8 {
	for t := 1; t <= MaxTags; t++ {
		if g.text[t] == "" {
			return uint8(t)
		}
	}
	for t := 1; t <= MaxTags; t++ {
		if tg.rule[t] == nil && (busy == nil || !busy(uint8(t))) {
			return uint8(t)
		}
	}
	return 0
}

// markOf is the mark of the connection d creates: the tag of its deciding
// rule, or of the other evaluation's (a forwarded packet), when one needs
// it; else 0.
func (tg *tagging) markOf(d *Decision) uint8 {
	for _, r := range [2]*rules.Rule{d.Rule, d.Other} {
		if r != nil && needsTag(r) && r.Index <= len(tg.tagOf) {
			if t := tg.tagOf[r.Index-1]; t != 0 {
				return t
			}
		}
	}
	return 0
}

// TaggedRule returns the rule whose tag is mark in the rules in force (a
// connection's mark: Decision.CT.Mark), or nil.
func (e *Stateful) TaggedRule(mark uint8) *rules.Rule {
	if mark == 0 {
		return nil
	}
	return e.cur.Load().rule[mark]
}

// LogAllRule returns, for a packet of a connection a `log (all)` rule
// created, that rule as it is now (renumbered by a reload if the rule
// moved); nil for any other packet.
func (e *Stateful) LogAllRule(d *Decision) *rules.Rule {
	if !d.Tracked || d.CT.Mark == 0 {
		return nil
	}
	if r := e.TaggedRule(d.CT.Mark); r != nil && r.LogAll {
		return r
	}
	return nil
}
