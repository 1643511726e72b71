//go:build race

package prw

// raceEnabled skips allocation counts: the race detector's instrumentation
// allocates on its own.
const raceEnabled = true
