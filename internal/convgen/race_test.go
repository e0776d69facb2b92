//go:build race

package convgen

// raceEnabled: the race detector slows generation about eightfold.
const raceEnabled = true
