package hasync

import "fmt"

// UnmarshalText reads what MarshalText wrote (the daemon's status, decoded
// by `statewall status`).
func (d *Direction) UnmarshalText(b []byte) error {
	switch string(b) {
	case "out":
		*d = Out
	case "in":
		*d = In
	default:
		return fmt.Errorf("hasync: unknown direction %q", b)
	}
	return nil
}

// UnmarshalText reads what MarshalText wrote.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("hasync: unknown state %q", b)
}
