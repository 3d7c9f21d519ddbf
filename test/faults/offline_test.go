//go:build faults

package faults

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These need no root: they check the plans, the rules and the helpers, not
// the rig itself.

func TestPlanIsASeedAlone(t *testing.T) {
	for seed := uint64(1); seed <= 50; seed++ {
		assert.Equal(t, plan(seed, 5).String(), plan(seed, 5).String(), "seed %d", seed)
	}
	assert.NotEqual(t, plan(12, 5).String(), plan(13, 5).String())
}

func TestTheCISeedsCoverEveryKind(t *testing.T) {
	seen := map[kind]bool{}
	for seed := uint64(1); seed <= uint64(numKinds); seed++ {
		seen[plan(seed, 5).faults[0].kind] = true
	}
	assert.Len(t, seen, int(numKinds))
}

func TestPlannedFaultsAreWellFormed(t *testing.T) {
	for _, nodes := range []int{3, 5, 7} {
		for seed := uint64(1); seed <= 300; seed++ {
			s := plan(seed, nodes)
			require.Len(t, s.faults, faultsPerSchedule)
			for _, f := range s.faults {
				for _, n := range append(append([]int(nil), f.nodes...), f.other...) {
					require.True(t, n >= 1 && n <= nodes, "seed %d %s: node %d", seed, f, n)
				}
				switch f.kind {
				case kill9:
					assert.NotEqual(t, 1, f.nodes[0], "kill9 spares the seed: kill-seed is its own kind")
				case isolateSeed, killSeed:
					assert.Equal(t, []int{1}, f.nodes)
				case rollSeedFirst:
					assert.Equal(t, 1, f.nodes[0])
				case rollSeedLast:
					assert.Equal(t, 1, f.nodes[nodes-1])
				case halves:
					assert.Len(t, append(f.nodes, f.other...), nodes)
				case oneWay:
					assert.NotEqual(t, f.nodes[0], f.other[0])
				case loss:
					assert.True(t, f.pct >= 20 && f.pct <= 40, "%d%%", f.pct)
				}
				switch f.kind {
				case rollSeedFirst, rollSeedLast, rollRandom:
					assert.ElementsMatch(t, allNodes(nodes), f.nodes, "a rolling restart restarts every node once")
				case rotateKey:
					assert.ElementsMatch(t, allNodes(nodes), f.nodes, "a rotation reaches every node")
					assert.True(t, f.hold >= 300*time.Millisecond && f.hold <= 800*time.Millisecond, "gap %s", f.hold)
				case cutHealKill:
					assert.GreaterOrEqual(t, f.after, time.Second)
					assert.Greater(t, f.down, clientTimeout)
				case kill9, killSeed, cutKill:
					// The client's timeout must end before a killed node
					// comes back: acks are attributed to the life a request
					// started in.
					assert.Greater(t, f.down, clientTimeout)
				}
			}
		}
	}
}

func TestRuleset(t *testing.T) {
	r := newNetRig(5)
	r.subnet = "10.213.7"
	assert.Equal(t, "table inet lkf\ndelete table inet lkf\n", r.ruleset(inputRules{}))
	assert.Equal(t, `table inet lkf
delete table inet lkf
table inet lkf {
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr { 10.213.7.12, 10.213.7.14 } drop
		ip saddr 10.213.7.0/24 ip saddr != 10.213.7.1 numgen random mod 100 < 30 drop
	}
}
`, r.ruleset(inputRules{from: map[int]bool{4: true, 2: true}, loss: 30}))
}

func TestCutOff(t *testing.T) {
	r := newNetRig(3)
	var spans []int
	r.onCut = func(n int, from, to time.Time) { spans = append(spans, n) }
	r.applied[1].from[2] = true // 1 hears nothing from 2
	assert.False(t, r.cutOffLocked(1))
	r.applied[3].from[1] = true // 3 hears nothing from 1: no TCP either way
	assert.True(t, r.cutOffLocked(1))
	assert.False(t, r.cutOffLocked(2), "2 still talks with 3")
	r.trackCutsLocked(time.Now())
	r.applied[3].from[1] = false
	r.trackCutsLocked(time.Now())
	assert.Equal(t, []int{1}, spans)
}

func TestIdenticalAndSizes(t *testing.T) {
	same := map[int]map[string][]string{
		1: {"p": {"a", "b"}, "q": nil},
		2: {"p": {"a", "b"}, "q": {}},
	}
	assert.True(t, identical(same))
	assert.True(t, sizesMatch(same, map[string]int{"p": 2, "q": 0}))
	assert.False(t, sizesMatch(same, map[string]int{"p": 1, "q": 0}), "grew since the counts were read")

	for name, final := range map[string]map[int]map[string][]string{
		"a user differs": {1: {"p": {"a", "b"}}, 2: {"p": {"a", "c"}}},
		"a user missing": {1: {"p": {"a", "b"}}, 2: {"p": {"a"}}},
		"a post missing": {1: {"p": {"a"}, "q": {"b"}}, 2: {"p": {"a"}}},
	} {
		assert.False(t, identical(final), name)
	}
}
