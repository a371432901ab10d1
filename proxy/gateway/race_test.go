//go:build race

package gateway_test

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
