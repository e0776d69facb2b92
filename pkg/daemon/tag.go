package daemon

import "github.com/statewall/statewall/pkg/nfq"

// checkTag refuses a tag that cannot name the divert chains and the
// defragmentation table, before anything runs (Config.check). The rule is
// nfq's, which makes both: see nfq.CheckTag.
func checkTag(tag string) error { return nfq.CheckTag(tag) }
