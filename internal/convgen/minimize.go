package convgen

import (
	"fmt"
	"strings"
)

// Minimize shrinks a failing input by delta debugging (Zeller and
// Hildebrandt's ddmin): it returns a subset of the indices 0..n-1, in
// order, on which fails still reports true and from which no single index
// can be removed without fails turning false (1-minimal). Indices in must
// are in every subset tried (the packet that disagrees, say). fails(all) is
// assumed true. fails gets its subsets in increasing order and is never
// called twice with the same subset. An error from fails stops the search.
func Minimize(n int, must []int, fails func(keep []int) (bool, error)) ([]int, error) {
	isMust := map[int]bool{}
	for _, m := range must {
		isMust[m] = true
	}
	var cur []int // the removable indices still in
	for i := range n {
		if !isMust[i] {
			cur = append(cur, i)
		}
	}
	seen := map[string]bool{}
	test := func(sub []int) (bool, error) {
		keep := merge(sub, must)
		k := key(keep)
		if seen[k] {
			return false, nil
		}
		seen[k] = true
		return fails(keep)
	}
	gran := 2
	for len(cur) > 0 {
		if len(cur) < gran {
			gran = len(cur)
		}
		chunks := split(cur, gran)
		reduced := false
		// Try each chunk alone, then each complement.
		for _, c := range chunks {
			ok, err := test(c)
			if err != nil {
				return nil, err
			}
			if ok {
				cur, gran, reduced = c, 2, true
				break
			}
		}
		if !reduced {
			for i := range chunks {
				comp := complement(chunks, i)
				ok, err := test(comp)
				if err != nil {
					return nil, err
				}
				if ok {
					cur, gran, reduced = comp, max(gran-1, 2), true
					break
				}
			}
		}
		if !reduced {
			if gran >= len(cur) {
				break
			}
			gran = min(2*gran, len(cur))
		}
	}
	// ddmin ends when no chunk of size one can go: cur is 1-minimal.
	// The empty set is worth a try too (only the must indices).
	if len(cur) > 0 {
		if ok, err := test(nil); err != nil {
			return nil, err
		} else if ok {
			cur = nil
		}
	}
	return merge(cur, must), nil
}

func split(s []int, k int) [][]int {
	var out [][]int
	for i := range k {
		lo, hi := i*len(s)/k, (i+1)*len(s)/k
		if hi > lo {
			out = append(out, s[lo:hi])
		}
	}
	return out
}

func complement(chunks [][]int, skip int) []int {
	var out []int
	for i, c := range chunks {
		if i != skip {
			out = append(out, c...)
		}
	}
	return out
}

// merge returns the sorted union of two sorted, disjoint index lists.
func merge(a, b []int) []int {
	out := make([]int, 0, len(a)+len(b))
	out = append(out, a...)
	out = append(out, b...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func key(s []int) string {
	var b strings.Builder
	for _, v := range s {
		fmt.Fprintf(&b, "%d,", v)
	}
	return b.String()
}
