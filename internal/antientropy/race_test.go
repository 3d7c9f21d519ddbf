//go:build race

package antientropy

// The race detector slows the simulation about tenfold: the default run is
// shorter under it (make sim runs thousands without it).
func init() { defaultSchedules = 40 }
