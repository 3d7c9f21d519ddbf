//go:build faults

package faults

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/faultcheck"
)

// TestRigSeesLossAndDivergence runs the rig and the checker on faults whose
// outcome is the same on any likesd: likes written only to a node that is
// cut off from every peer differ between nodes while the cut lasts, and are
// lost when that node stops before the cut heals. If this fails, the fault
// test is blind.
func TestRigSeesLossAndDivergence(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the fault test needs root: network namespaces and nftables")
	}
	cfg := configFromEnv(t)
	cfg.joinAll = false
	sweepStale()
	rig := newNetRig(3)
	require.NoError(t, rig.up())
	t.Cleanup(rig.teardown)
	t.Cleanup(teardownOnSignal(rig))
	c := newCluster(t, cfg, rig, "self-test")
	require.NoError(t, c.startAll(3, false))
	c.rec.start(time.Now())

	posts := []string{"self-p0", "self-p1", "self-p2"}
	via := func(n *node, count int) {
		l := &load{cfg: loadConfig{tag: "self-" + n.name(), posts: posts}, nodes: []*node{n}, hc: c.hc, rec: c.rec}
		for range count {
			l.like(context.Background())
		}
	}
	judge := func(cl *cluster, timeout time.Duration) faultcheck.Report {
		healed := time.Now()
		final, converged := cl.converge(posts, timeout)
		h := c.rec.history()
		h.Final, h.Healed, h.Converged = final, healed, converged
		r := faultcheck.Check(h, cfg.check)
		t.Log(r.Line())
		return r
	}

	via(c.node(1), 30)
	require.NoError(t, rig.isolate(3))
	via(c.node(3), 30)
	r := judge(c, 3*time.Second)
	assert.False(t, r.Converged)
	assert.Positive(t, r.DivergedPosts)
	assert.GreaterOrEqual(t, r.DivergedLikes, 30, "n3's likes are on n3 alone")
	assert.Equal(t, 30, r.Acked, "n1's likes, held by n1 and a peer (w=2)")
	assert.Equal(t, 30, r.Accepted202, "n3, cut off from every peer, answers 202: stored, not replicated")
	assert.Zero(t, r.Lost+r.Phantoms+r.Decreases+r.Crashes)

	// A graceful stop while cut off cannot hand anything off: n3's likes
	// are lost, and no kill excuses them.
	require.NoError(t, c.node(3).term())
	require.NoError(t, rig.heal())
	rest := *c
	rest.nodes = c.nodes[:2]
	r = judge(&rest, 20*time.Second)
	assert.True(t, r.Converged)
	assert.Equal(t, 30, r.Lost)
	assert.Equal(t, map[faultcheck.Life]int{{Node: 3, Gen: 0}: 30}, r.LostBy)
	assert.Zero(t, r.LostAsync+r.LostCutoff+r.Phantoms+r.DivergedPosts)
	assert.NotEmpty(t, r.Failures(false))
}

// TestRigSeesAForgottenFsync cuts the power of nodes that acknowledge likes
// before syncing them (--fsync interval, a sync every 10 s): the power cut
// must lose them, and the checker must say so. If this fails, the power-cut
// fault cannot find a missing fsync.
func TestRigSeesAForgottenFsync(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the fault test needs root: network namespaces, nftables, FUSE")
	}
	cfg := configFromEnv(t)
	cfg.joinAll, cfg.memory = false, false
	sweepStale()
	rig := newNetRig(3)
	require.NoError(t, rig.up())
	t.Cleanup(rig.teardown)
	t.Cleanup(teardownOnSignal(rig))
	c := newCluster(t, cfg, rig, "self-test-fsync")
	for _, n := range c.nodes {
		n.extra = []string{"--fsync", "interval", "--fsync-interval", "10s"}
	}
	require.NoError(t, c.startAll(3, false))
	c.rec.start(time.Now())

	posts := []string{"fsync-p0", "fsync-p1"}
	l := &load{cfg: loadConfig{tag: "fsync", posts: posts}, nodes: []*node{c.node(1)}, hc: c.hc, rec: c.rec}
	for range 30 {
		l.like(context.Background())
	}
	for _, n := range c.nodes {
		require.NoError(t, n.powerCut(t))
	}
	require.NoError(t, c.restartAll(0))
	healed := time.Now()
	final, converged := c.converge(posts, 20*time.Second)
	h := c.rec.history()
	h.Final, h.Healed, h.Converged = final, healed, converged
	r := faultcheck.Check(h, cfg.check)
	t.Log(r.Line())
	assert.Equal(t, 30, r.Acked, "acknowledged at w=2 by nodes that had not synced them")
	assert.Equal(t, 30, r.Lost+r.LostAsync, "the power cut took every one")
	assert.NotEmpty(t, r.Failures(true))
}
