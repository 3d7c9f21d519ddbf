package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is --gc-percent's default; see docs/benchmarks.md
// (bench-memory) for the measurements behind it.
const defaultGCPercent = 25

// memoryLimit turns --memory-limit into bytes for debug.SetMemoryLimit:
// "auto" is 90% of the cgroup's memory.max when there is one (a pod's
// limit) and no limit otherwise, unless GOMEMLIMIT is set, which then wins;
// "0" or "off" is no limit; else a size such as 512MiB, 2GiB or 1500000000.
func memoryLimit(flag string, getenv func(string) string, cgroupMax func() (int64, bool)) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "auto", "":
		if getenv("GOMEMLIMIT") != "" {
			return -1, nil // the runtime read it already: leave it
		}
		if max, ok := cgroupMax(); ok {
			return max / 10 * 9, nil
		}
		return math.MaxInt64, nil
	case "0", "off":
		return math.MaxInt64, nil
	}
	return parseSize(flag)
}

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1}}

func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("%q: want auto, off, or a size such as 512MiB or 2GiB", s)
	}
	return int64(v * float64(mult)), nil
}

// cgroupMemoryMax reads cgroup v2's memory.max (v1's limit_in_bytes as a
// fallback); false when there is none or it is "max".
func cgroupMemoryMax() (int64, bool) {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
		if err != nil || v <= 0 || v >= 1<<60 { // "max", or v1's "unlimited" 2^63-4096
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// memorySettings resolves --memory-limit, and leaves GOGC to the runtime
// when it is set and --gc-percent (or LIKESD_GC_PERCENT) is not.
func (o *options) memorySettings(f *flags, memLimit string, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	getenv := func(k string) string { return env[k] }
	var err error
	if o.memoryLimit, err = memoryLimit(memLimit, getenv, cgroupMemoryMax); err != nil {
		return fmt.Errorf("--memory-limit %w", err)
	}
	set := false
	f.fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "gc-percent" })
	if !set && getenv("GOGC") != "" {
		o.gcPercent = 0
	}
	return nil
}

// applyMemory sets the runtime's memory limit and GC target; it returns
// what it set, for the start-up log.
func applyMemory(o options) (limit int64, gcPercent int) {
	if o.memoryLimit >= 0 {
		debug.SetMemoryLimit(o.memoryLimit)
	}
	if o.gcPercent != 0 {
		debug.SetGCPercent(o.gcPercent)
	}
	gc := o.gcPercent
	if gc == 0 { // left to GOGC: read it back without changing it
		gc = debug.SetGCPercent(100)
		debug.SetGCPercent(gc)
	}
	return debug.SetMemoryLimit(-1), gc
}

// budgetLimit is the limit the memory budget is a share of: the
// container's memory.max when there is one (what the kernel enforces),
// else the runtime's soft limit when one is set (--memory-limit or
// GOMEMLIMIT), else none.
func budgetLimit(cgroupMax func() (int64, bool), runtimeLimit int64) int64 {
	if max, ok := cgroupMax(); ok {
		return max
	}
	if runtimeLimit > 0 && runtimeLimit < math.MaxInt64 {
		return runtimeLimit
	}
	return 0
}
