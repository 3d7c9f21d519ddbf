package main

import (
	"bytes"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryLimit(t *testing.T) {
	noEnv := func(string) string { return "" }
	noCgroup := func() (int64, bool) { return 0, false }
	pod := func() (int64, bool) { return 1 << 30, true }
	tests := []struct {
		flag   string
		env    func(string) string
		cgroup func() (int64, bool)
		want   int64
	}{
		{"auto", noEnv, noCgroup, math.MaxInt64},
		{"auto", noEnv, pod, (1 << 30) / 10 * 9},
		{"auto", func(k string) string { return map[string]string{"GOMEMLIMIT": "1GiB"}[k] }, pod, -1},
		{"off", noEnv, pod, math.MaxInt64},
		{"0", noEnv, pod, math.MaxInt64},
		{"512MiB", noEnv, pod, 512 << 20},
		{"2GiB", noEnv, noCgroup, 2 << 30},
		{"1.5G", noEnv, noCgroup, 1_500_000_000},
		{"1000000", noEnv, noCgroup, 1_000_000},
	}
	for _, tt := range tests {
		got, err := memoryLimit(tt.flag, tt.env, tt.cgroup)
		require.NoError(t, err, tt.flag)
		assert.Equal(t, tt.want, got, tt.flag)
	}
	for _, bad := range []string{"lots", "-1MiB", "12XB"} {
		_, err := memoryLimit(bad, noEnv, noCgroup)
		assert.Error(t, err, bad)
	}
}

func TestGCPercentFlagAndEnv(t *testing.T) {
	env := func(m map[string]string) []string {
		var out []string
		for k, v := range m {
			out = append(out, k+"="+v)
		}
		return out
	}
	o, err := parseOptions(nil, env(nil), nil)
	require.NoError(t, err)
	assert.Equal(t, defaultGCPercent, o.gcPercent)
	o, err = parseOptions(nil, env(map[string]string{"GOGC": "200"}), nil)
	require.NoError(t, err)
	assert.Zero(t, o.gcPercent, "GOGC set and the flag not: the runtime's GOGC stays")
	o, err = parseOptions([]string{"--gc-percent", "30"}, env(map[string]string{"GOGC": "200"}), nil)
	require.NoError(t, err)
	assert.Equal(t, 30, o.gcPercent)
	o, err = parseOptions(nil, env(map[string]string{"GOGC": "200", "LIKESD_GC_PERCENT": "40"}), nil)
	require.NoError(t, err)
	assert.Equal(t, 40, o.gcPercent)
	_, err = parseOptions([]string{"--memory-limit", "nope"}, env(nil), nil)
	assert.ErrorContains(t, err, "--memory-limit")
}

func TestBudgetLimit(t *testing.T) {
	container := func() (int64, bool) { return 512 << 20, true }
	none := func() (int64, bool) { return 0, false }
	assert.EqualValues(t, 512<<20, budgetLimit(container, 460<<20), "the container's limit is what kills the process")
	assert.EqualValues(t, 1<<30, budgetLimit(none, 1<<30), "else the runtime's")
	assert.EqualValues(t, 0, budgetLimit(none, math.MaxInt64), "else none")

	o, err := parseOptions([]string{"--memory-refuse-at", "70"}, nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.InDelta(t, 0.70, o.budget.RefuseAt, 1e-9)
	_, err = parseOptions([]string{"--memory-refuse-at", "5"}, nil, &bytes.Buffer{})
	require.ErrorContains(t, err, "--memory-refuse-at")
}
