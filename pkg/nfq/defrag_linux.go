//go:build linux

package nfq

import "errors"

// EnableDefrag makes the kernel reassemble fragmented datagrams before the
// divert rules see them, in the named network namespace (the caller's if
// empty), by installing the defragmentation table for tag (empty:
// "STATEWALL"; see defrag.go for why a table is needed and what it holds)
// with nft. Leftovers of an earlier run with the same tag are replaced in
// the same transaction. It returns the rule it installed: the tproxy rule,
// or, on a kernel without nft_tproxy, the ct rule that also switches on
// the kernel's connection tracking.
func EnableDefrag(netns, tag string) (rule string, err error) {
	if tag == "" {
		tag = defaultTag
	}
	// The last line before the tag reaches a script run as root, even if
	// the caller checked it already.
	if err := CheckTag(tag); err != nil {
		return "", err
	}
	var errs []error
	for _, rule := range defragRules {
		_, err := runner{netns}.run(defragScript(tag, rule), "nft", "-f", "-")
		if err == nil {
			return rule, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// DisableDefrag removes the defragmentation table for tag (empty:
// "STATEWALL") from the named network namespace (the caller's if empty).
// It is not an error if the table is not there.
func DisableDefrag(netns, tag string) error {
	if tag == "" {
		tag = defaultTag
	}
	if err := CheckTag(tag); err != nil {
		return err
	}
	_, err := runner{netns}.run(defragScript(tag, ""), "nft", "-f", "-")
	return err
}
