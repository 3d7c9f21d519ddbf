//go:build race

package link_test

// The race detector slows the simulation about tenfold: the default run is
// shorter under it (-sim.schedules=N runs more).
func init() { defaultSchedules = 30 }
