package rules

import "fmt"

// Error is a problem in a rules file, at a position. Parse stops at the
// first one: later errors are often consequences of the first, and one
// precise message is worth more than a cascade.
type Error struct {
	File string
	Line int // 1-based physical line (a `\` continuation does not renumber)
	Col  int // 1-based byte column within that line
	Msg  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}
