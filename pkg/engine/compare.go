package engine

import "github.com/statewall/statewall/pkg/conntrack"

// Agreement classifies how the two engines' verdicts on one packet relate;
// the comparison groups disagreements by it.
type Agreement uint8

const (
	Agree Agreement = iota
	// OnlyStatefulPasses: stateless blocks, stateful passes (typically
	// replies and related ICMP errors of allowed connections).
	OnlyStatefulPasses
	// OnlyStatelessPasses: stateless passes, stateful blocks (typically
	// scans, injected or out-of-window packets conntrack calls invalid).
	OnlyStatelessPasses
)

func (a Agreement) String() string {
	switch a {
	case OnlyStatefulPasses:
		return "only stateful passes"
	case OnlyStatelessPasses:
		return "only stateless passes"
	}
	return "agree"
}

// Compare says how a stateless and a stateful decision on the same packet
// relate.
func Compare(stateless, stateful Decision) Agreement {
	switch {
	case stateless.Verdict == stateful.Verdict:
		return Agree
	case stateful.Verdict == Pass:
		return OnlyStatefulPasses
	}
	return OnlyStatelessPasses
}

// Explain explains a disagreement in a few words that group well: the
// conntrack label and reason on the stateful side, or the rule that made
// the difference. Two packets with the same explanation disagree for the
// same reason.
func Explain(stateless, stateful Decision) string {
	switch Compare(stateless, stateful) {
	case OnlyStatefulPasses:
		switch stateful.Cause {
		case CauseState:
			if stateful.CT.Label == conntrack.LabelRelated {
				return "ICMP error about an allowed connection (conntrack: related); stateless " + stateless.Reason()
			}
			return "reply or continuation of an allowed connection (conntrack: established); stateless " + stateless.Reason()
		case CauseInvalid:
			return "conntrack invalid but set invalid pass (" + stateful.CT.ReasonString() + ")"
		}
		return "stateful " + stateful.Reason() + "; stateless " + stateless.Reason()
	case OnlyStatelessPasses:
		switch stateful.Cause {
		case CauseInvalid:
			return "invalid to conntrack (" + stateful.CT.ReasonString() + "); stateless " + stateless.Reason()
		case CauseTableFull:
			return "state table full"
		case CauseLimit, CauseOverload:
			return "stateful tracking option (" + stateful.Detail + "): stateless mode has no states to count; stateless " + stateless.Reason()
		case CauseFragment:
			// Reassembly dropped it: conntrack never saw it.
			return "fragment dropped by reassembly (" + stateful.Detail + "); stateless " + stateless.Reason()
		}
		if stateful.Midstream {
			return "TCP without SYN and no connection (ACK scan or mid-stream): stateful rules open TCP only with a SYN; stateless " + stateless.Reason()
		}
		return "new to conntrack, stateful " + stateful.Reason() + "; stateless " + stateless.Reason()
	}
	return ""
}
