package engine_test

import (
	"strings"
	"testing"
	"time"

	"github.com/statewall/statewall/pkg/engine"
)

func TestCompare(t *testing.T) {
	pass := engine.Decision{Verdict: engine.Pass}
	block := engine.Decision{Verdict: engine.Block}
	for _, tc := range []struct {
		stateless, stateful engine.Decision
		want                engine.Agreement
		text                string
	}{
		{pass, pass, engine.Agree, "agree"},
		{block, block, engine.Agree, "agree"},
		{block, pass, engine.OnlyStatefulPasses, "only stateful passes"},
		{pass, block, engine.OnlyStatelessPasses, "only stateless passes"},
	} {
		got := engine.Compare(tc.stateless, tc.stateful)
		if got != tc.want || got.String() != tc.text {
			t.Errorf("Compare(%v, %v) = %v (%q), want %v (%q)", tc.stateless.Verdict, tc.stateful.Verdict, got, got.String(), tc.want, tc.text)
		}
		if e := engine.Explain(tc.stateless, tc.stateful); (e == "") != (tc.want == engine.Agree) {
			t.Errorf("Explain(%v, %v) = %q: want an explanation exactly when they disagree", tc.stateless.Verdict, tc.stateful.Verdict, e)
		}
	}
}

// TestExplain: a disagreement is explained by what decided the stateful
// side, in words that say which kind of traffic it is; decided on real
// packets.
func TestExplain(t *testing.T) {
	type pair struct{ stateless, stateful engine.Decision }
	decide := func(rules string, lines ...string) pair {
		t.Helper()
		rs := ruleset(t, rules)
		sl, st := engine.NewStateless(rs), engine.NewStateful(rs, newTable(rs))
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
		var last pair
		for _, l := range lines {
			p := pkt(t, l)
			now += int64(time.Millisecond)
			last = pair{sl.Decide(p, dirOf(rs, p)), st.Decide(p, dirOf(rs, p), now)}
		}
		return last
	}
	for _, tc := range []struct {
		name  string
		p     pair
		agree engine.Agreement
		words []string // the explanation contains each
	}{{
		name: "reply",
		p: decide("@webserver.rules",
			"udp 198.18.0.2:33333 > 192.0.2.53:53",
			"udp 192.0.2.53:53 > 198.18.0.2:33333"),
		agree: engine.OnlyStatefulPasses,
		words: []string{"established", "stateless default"},
	}, {
		name: "related ICMP error",
		p: decide("@webserver.rules",
			"tcp 198.18.0.2:40001 > 203.0.113.5:443 S seq=77",
			"icmp 192.0.2.1 > 198.18.0.2 type=3 code=4 [tcp 198.18.0.2:40001 > 203.0.113.5:443 S seq=77]"),
		agree: engine.OnlyStatefulPasses,
		words: []string{"related", "stateless default"},
	}, {
		name:  "ACK scan",
		p:     decide("@webserver.rules", "tcp 198.18.0.1:41000 > 198.18.0.2:80 A seq=1 ack=1"),
		agree: engine.OnlyStatelessPasses,
		words: []string{"SYN", "stateless rule 1"},
	}, {
		name:  "invalid flags",
		p:     decide("@webserver.rules", "tcp 198.18.0.1:41000 > 198.18.0.2:80 FPU seq=1"),
		agree: engine.OnlyStatelessPasses,
		words: []string{"invalid", "Xmas", "stateless rule 1"},
	}, {
		name:  "invalid passed by set invalid pass",
		p:     decide("set default block\nset invalid pass\n", "tcp 198.18.0.1:41000 > 198.18.0.2:80 SF seq=1"),
		agree: engine.OnlyStatefulPasses,
		words: []string{"invalid", "SYN+FIN"},
	}, {
		name:  "fragment dropped by reassembly",
		p:     pair{engine.Decision{Verdict: engine.Pass, Cause: engine.CauseDefault}, engine.FragmentDropped("overlapping fragments")},
		agree: engine.OnlyStatelessPasses,
		words: []string{"overlapping fragments", "stateless default"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if a := engine.Compare(tc.p.stateless, tc.p.stateful); a != tc.agree {
				t.Fatalf("stateless %s, stateful %s: %v, want %v", verdict(tc.p.stateless), verdict(tc.p.stateful), a, tc.agree)
			}
			e := engine.Explain(tc.p.stateless, tc.p.stateful)
			for _, w := range tc.words {
				if !strings.Contains(e, w) {
					t.Errorf("Explain = %q: lacks %q", e, w)
				}
			}
		})
	}
}

// Regression: a fragment that reassembly dropped never reaches conntrack
// (its label is invalid), but Explain called it "new to conntrack".
func TestExplainDroppedFragmentIsNotNew(t *testing.T) {
	sl := engine.Decision{Verdict: engine.Pass, Cause: engine.CauseDefault}
	st := engine.FragmentDropped("incomplete datagram timed out")
	if e := engine.Explain(sl, st); strings.Contains(e, "new") {
		t.Errorf("Explain = %q for a fragment labelled %s", e, st.Label())
	}
}
