// Package benchcpu owns the CPU-time measurement the Go benchmarks report
// beside wall time: on a machine shared with other work, wall-clock ns/op
// measures the neighbours, CPU per op measures the code.
package benchcpu

import (
	"syscall"
	"testing"
	"time"
)

// Used is the CPU this process has used (user and system, GC workers
// included).
func Used() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report runs the timed loop and reports its CPU per op as cpu-ns/op.
func Report(b *testing.B, loop func()) {
	b.ResetTimer()
	start := Used()
	loop()
	b.StopTimer()
	b.ReportMetric(float64(Used()-start)/float64(b.N), "cpu-ns/op")
}
