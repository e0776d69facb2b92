//go:build !race

package convgen

const raceEnabled = false
