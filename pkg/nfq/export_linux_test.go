//go:build linux

package nfq

// The namespace tests are in package nfq_test: they run nfq's reader
// beside the go-nfqueue references of pkg/nfq/nfqref, which imports nfq.
// This is what they use of nfq's insides.

// DetectBackendIn is DetectBackend in the named network namespace.
func DetectBackendIn(netns string) (string, error) { return detectBackend(runner{netns}, defaultTag) }

// Tool names a command of the backend for a family (see tool).
func Tool(backend string, v6 bool, verb string) string { return tool(backend, v6, verb) }

// SetAfterDrain sets a hook that runs after every queue of r is drained
// and before the sockets are closed. Call it before Run or Close.
func SetAfterDrain(r *Reader, f func()) { r.afterDrain = f }

// VerdictWrites returns the verdict writes and verdict messages of r's
// first queue. r must be closed.
func VerdictWrites(r *Reader) (writes, msgs uint64) {
	q := r.queues[0]
	return q.writes, q.msgs
}

// SetFlowSeed fixes the flow hash's key Install uses (DivertConfig's
// seed), so that a test's flows spread the same way every run.
func SetFlowSeed(c *DivertConfig, seed uint32) { c.seed = seed }
