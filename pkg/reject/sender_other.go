//go:build !linux

package reject

// Sender sends crafted answers; on this system it cannot (see Open).
type Sender struct{}

// Open returns ErrNotSupported: raw sockets that send a whole IP packet
// as given are a Linux feature here.
func Open(cfg Config) (*Sender, error) { return nil, ErrNotSupported }

// Send reports false.
func (s *Sender) Send(b []byte) bool { return false }

// SendIf reports false.
func (s *Sender) SendIf(b []byte, ifindex uint32) bool { return false }

// Stats returns zero counters.
func (s *Sender) Stats() Stats { return Stats{} }

// Close does nothing.
func (s *Sender) Close() error { return nil }
