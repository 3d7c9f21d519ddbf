package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func (t *memberTable) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// injectGone adds members gone since at in one step and returns the
// table's size right after, so a concurrent prune cannot interleave.
func (t *memberTable) injectGone(names []string, at time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, name := range names {
		t.m[name] = &memberEntry{peer: peer{name: name}, state: stateDead, since: at}
	}
	return len(t.m)
}

// Finding 7 of issue #20: gone members are forgotten by prune, not only
// when someone lists the table.
func TestMemberTablePrunes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tab := newMemberTable("self", time.Minute)
	tab.joined(tp("self", 1, 1), false, t0)
	for i := range 100 {
		p := tp(fmt.Sprintf("m%d", i), uint16(10+i), uint64(10+i))
		tab.joined(p, false, t0)
		tab.gone(p.name, t0)
	}
	tab.joined(tp("alive", 2, 2), false, t0)
	assert.Equal(t, 0, tab.prune(t0.Add(time.Minute)), "kept for forgetAfter")
	assert.Equal(t, 100, tab.prune(t0.Add(time.Minute+time.Second)))
	assert.Equal(t, 2, tab.size(), "the node and the live member stay")
}

func TestPruneStrays(t *testing.T) {
	t0 := time.Unix(1000, 0)
	last := map[string]time.Time{"old:1": t0, "new:1": t0.Add(time.Second)}
	pruneStrays(last, t0.Add(2*time.Second), 2*time.Second)
	assert.Equal(t, map[string]time.Time{"new:1": t0.Add(time.Second)}, last)
}

// A node prunes its table on its own schedule: nobody calls Members here.
func TestNodePrunesItsMemberTable(t *testing.T) {
	n := startNode(t, "n1", nil, func(c *Config) { c.RejoinInterval = 20 * time.Millisecond })
	waitReady(t, n)
	before := n.members.size()
	var names []string
	for i := range 50 {
		names = append(names, fmt.Sprintf("gone%d", i))
	}
	// The join loop prunes every 20 ms: inject and count in one step.
	require.Equal(t, before+50, n.members.injectGone(names, time.Now().Add(-time.Hour)))
	require.Eventually(t, func() bool { return n.members.size() == before }, waitLong, 10*time.Millisecond)
}
