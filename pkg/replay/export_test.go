package replay

// HeldMoves returns how many elements the replay's queue of held records
// has copied so far: tests check that it stays linear in the records
// replayed.
func HeldMoves(r *Replayer) int { return r.held.moved }
