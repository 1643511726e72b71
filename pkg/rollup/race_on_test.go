//go:build race

package rollup

// raceEnabled shrinks the exhaustive restart test under the race
// detector, which slows it about tenfold.
const raceEnabled = true
