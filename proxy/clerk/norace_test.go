//go:build !race

package clerk

const raceEnabled = false
