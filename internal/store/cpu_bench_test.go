package store

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU this process has used (user and system, GC workers
// included). On a machine shared with other work, wall-clock ns/op measures
// the neighbours; CPU per op measures the code.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU runs the timed loop and reports its CPU per op as cpu-ns/op.
func reportCPU(b *testing.B, loop func()) {
	b.ResetTimer()
	start := cpuTime()
	loop()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
