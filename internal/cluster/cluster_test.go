package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/link"
	"github.com/likesd/likesd/internal/store"
)

// memberNames are the members n counts in the cluster: alive or suspect
// (its own probes may time out on a starved machine; memberlist's Members
// lists both).
func memberNames(n *testNode) []string {
	var out []string
	for _, m := range n.Members() {
		if m.State == "alive" || m.State == "suspect" {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}

func waitMembers(t *testing.T, want []string, nodes ...*testNode) {
	t.Helper()
	sort.Strings(want)
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if strings.Join(memberNames(n), ",") != strings.Join(want, ",") {
				return false
			}
		}
		return true
	}, waitLong, 20*time.Millisecond, "members never became %v", want)
}

// waitConverged waits until every node holds exactly want (post → count),
// and on failure says which node held what.
func waitConverged(t *testing.T, want map[string]int, nodes ...*testNode) {
	t.Helper()
	posts := make([]string, 0, len(want))
	for p := range want {
		posts = append(posts, p)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, n := range nodes {
			assert.Equal(c, want, n.store.Counts(posts), "node %s (stats %+v)", n.Self(), n.Stats())
		}
	}, waitLong, 20*time.Millisecond)
}

func users(prefix string, k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

// noPushPull leaves gossip as the only path between nodes. Gossip alone is
// best effort: a live node wrongly declared dead under CPU starvation misses
// frames until push/pull repairs it. So these tests also make the failure
// detector lenient, to test the gossip path and not the detector.
func noPushPull(c *Config) {
	c.PushPullInterval = time.Hour
	c.SyncInterval = time.Minute // a joining node still takes its full sync at once
	c.RejoinInterval = time.Hour // a re-join is a push/pull too
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 400 * time.Millisecond
	c.SuspicionMult = 8
}

func gossipOnly(c *Config) { noPushPull(c); c.FastPath = FastPathGossip }

func gossipFastPath(c *Config) { c.FastPath = FastPathGossip }

// The direct fast path sends every batch to every alive peer: with push/pull
// off, three nodes must still converge exactly, and nothing is forwarded.
func TestDirectFastPathDeliversToEveryPeer(t *testing.T) {
	a := startNode(t, "a", nil, noPushPull)
	b := startNode(t, "b", []string{a.Addr()}, noPushPull)
	c := startNode(t, "c", []string{a.Addr()}, noPushPull)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)

	like(a, "p1", users("u", 3000)...)
	like(b, "p1", users("u", 3000)...)
	like(c, "p2", users("w", 500)...)
	waitConverged(t, map[string]int{"p1": 3000, "p2": 500}, a, b, c)
	// Every like a node framed reached both peers on the fast path.
	// (RepairApplied need not be zero: a join exchange that runs after the
	// first likes gives a new node a snapshot.)
	nodes := []*testNode{a, b, c}
	require.Eventually(t, func() bool {
		var queued, received uint64
		for _, n := range nodes {
			queued += n.Stats().LikesQueued
			received += n.Stats().LikesReceived
		}
		return received == 2*queued
	}, waitLong, 10*time.Millisecond, "the fast path brought every like to every peer")
	for _, n := range nodes {
		assert.Zero(t, n.Stats().DirectErrors+n.Stats().PeerDropped, n.Self())
	}
	assert.Equal(t, uint64(500), c.Stats().LikesQueued, "c sent only its own likes: no forwarding")
}

// With two nodes every gossip transmission goes to the one peer, so gossip
// alone must carry every like both ways.
func TestTwoNodesConvergeByGossipAlone(t *testing.T) {
	a := startNode(t, "a", nil, gossipOnly)
	b := startNode(t, "b", []string{a.Addr()}, gossipOnly)
	waitMembers(t, []string{"a", "b"}, a, b)
	waitReady(t, a, b)

	like(a, "p1", users("u", 300)...)
	like(b, "p1", users("u", 300)...) // the same users again, through the other node
	like(b, "p2", users("v", 50)...)
	waitConverged(t, map[string]int{"p1": 300, "p2": 50}, a, b)
	assert.Zero(t, a.Stats().SyncPulled+b.Stats().SyncPulled, "gossip alone carried every like")
}

// memberlist's broadcast queue counts transmissions, not which peer got
// them: with three or more nodes gossip is the fast path, and push/pull is
// what guarantees every node gets every like. Likes through every node, the
// same users retried through several, converge to exact counts.
func TestThreeNodesConverge(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	c := startNode(t, "c", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)

	like(a, "p1", users("u", 300)...)
	like(b, "p1", users("u", 300)...)
	like(c, "p1", users("u", 300)...)
	like(b, "p2", users("v", 50)...)
	like(c, "p2", users("w", 50)...)
	like(c, "p3", "solo")
	waitConverged(t, map[string]int{"p1": 300, "p2": 100, "p3": 1}, a, b, c)
	// A frame's likes are counted applied just after they are stored.
	require.Eventually(t, func() bool {
		var viaGossip uint64
		for _, n := range []*testNode{a, b, c} {
			viaGossip += n.Stats().LikesApplied
		}
		return viaGossip > 0
	}, waitLong, 10*time.Millisecond, "gossip carried likes, not only push/pull")
}

// memberlist never forwards user messages: each receiver must re-broadcast
// exactly the likes that gossip brought it new, once, and nothing that came
// by push/pull.
func TestReceiversForwardNewLikesOnce(t *testing.T) {
	// Anti-entropy's first sessions end before the likes, and the next are
	// a minute away: gossip is what carries them (on sessions, anti-entropy
	// is quick enough to beat it otherwise).
	cfg := func(c *Config) {
		gossipFastPath(c)
		c.SyncInterval = time.Minute
	}
	a := startNode(t, "a", nil, cfg)
	b := startNode(t, "b", []string{a.Addr()}, cfg)
	c := startNode(t, "c", []string{a.Addr()}, cfg)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	waitReady(t, a, b, c)
	like(a, "p", users("u", 100)...)
	waitConverged(t, map[string]int{"p": 100}, a, b, c)
	// Quiet: every broadcast sent, every message received applied. Past
	// this point a frame still arriving holds only dots seen already, so it
	// is never forwarded: the counts below are final.
	require.Eventually(t, func() bool {
		for _, n := range []*testNode{a, b, c} {
			if n.QueuedFrames() > 0 || n.inbox.Len() > 0 {
				return false
			}
		}
		sb, sc := b.Stats(), c.Stats()
		return sb.LikesQueued == sb.LikesApplied && sc.LikesQueued == sc.LikesApplied
	}, waitLong, 10*time.Millisecond)
	for _, n := range []*testNode{b, c} {
		st := n.Stats()
		assert.Equal(t, st.LikesApplied, st.LikesQueued, "%s forwards exactly what gossip brought it new", n.Self())
		assert.GreaterOrEqual(t, st.LikesReceived, st.LikesApplied)
	}
	assert.Positive(t, b.Stats().LikesApplied+c.Stats().LikesApplied)
}

func TestLateJoinerReceivesWholeState(t *testing.T) {
	a := startNode(t, "a", nil, noPushPull)
	b := startNode(t, "b", []string{a.Addr()}, noPushPull)
	waitMembers(t, []string{"a", "b"}, a, b)
	like(a, "p1", users("u", 500)...)
	like(b, "p2", users("u", 70)...)
	waitConverged(t, map[string]int{"p1": 500, "p2": 70}, a, b)

	c := startNode(t, "c", []string{b.Addr()}, noPushPull)
	waitConverged(t, map[string]int{"p1": 500, "p2": 70}, c)
	assert.Zero(t, c.Stats().LikesApplied, "its full sync, not the fast path, brought it")
	waitReady(t, c)
}

// A node that loses every fast-path batch still converges by anti-entropy.
func TestAntiEntropyHealsALostFastPath(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	c := startNode(t, "c", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	heal := cutOff(t, c, a, b)

	like(a, "p1", users("u", 200)...)
	like(b, "p2", users("u", 30)...)
	waitConverged(t, map[string]int{"p1": 200, "p2": 30}, a, b)
	heal()
	waitConverged(t, map[string]int{"p1": 200, "p2": 30}, c)
	assert.Zero(t, c.Stats().LikesApplied, "c applied nothing from the fast path")
	// (Counts converge while a session runs; its figures are counted when
	// it ends.)
	require.Eventually(t, func() bool { return c.Stats().SyncPulled+a.Stats().SyncPushed+b.Stats().SyncPushed > 0 },
		waitLong, 10*time.Millisecond, "anti-entropy carried them")
}

func TestSeedRestartWithNewIdentityEndsInOneCluster(t *testing.T) {
	seed := startNode(t, "seed-1", nil, nil)
	seedAddr := seed.Addr()

	w1 := startNode(t, "w1", []string{seedAddr}, nil)
	w2 := startNode(t, "w2", []string{seedAddr}, nil)
	waitMembers(t, []string{"seed-1", "w1", "w2"}, seed, w1, w2)
	like(w1, "p", users("u", 40)...)
	waitConverged(t, map[string]int{"p": 40}, seed, w1, w2)

	crash(t, seed)
	waitMembers(t, []string{"w1", "w2"}, w1, w2)

	// The master comes back at the same address with a new name, an empty
	// store and no seeds of its own: on its own it would be a second cluster.
	reborn := startNodeAt(t, seedAddr, "seed-2", nil, nil)
	waitMembers(t, []string{"seed-2", "w1", "w2"}, reborn, w1, w2)
	waitConverged(t, map[string]int{"p": 40}, reborn)
}

// Close hands off every like it holds that the others may lack, then
// leaves, and the others see a leave, not a failure. c's fast path is cut
// and periodic sync slowed to a minute, so only the hand-off can bring c's
// likes to a synced peer before c exits.
func TestCloseLeavesAndOthersSeeIt(t *testing.T) {
	a := startNode(t, "a", nil, noPushPull)
	b := startNode(t, "b", []string{a.Addr()}, noPushPull)
	c := startNode(t, "c", []string{a.Addr()}, noPushPull)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	waitReady(t, a, b, c)

	heal := cutOff(t, c, c)
	like(c, "p", users("u", 25)...)
	heal()
	assert.Zero(t, a.store.Count("p")+b.store.Count("p"), "the fast path carried none of c's likes")
	waitMembers(t, []string{"a", "b", "c"}, a, b, c) // c sees them alive again: they get the hand-off
	marks := map[*testNode]int{a: a.logs.mark(), b: b.logs.mark()}

	closeNode(t, c.Node)
	assert.NoError(t, c.Close(context.Background()), "Close is idempotent")
	assert.Zero(t, c.Stats().HandoffTimeouts)
	assert.True(t, a.store.Count("p") == 25 || b.store.Count("p") == 25,
		"before Close returned, a synced peer held all 25 (a %d, b %d)", a.store.Count("p"), b.store.Count("p"))
	waitMembers(t, []string{"a", "b"}, a, b)
	for n, mark := range marks {
		assert.Equal(t, "left", stateOf(n, "c"), "%s sees c left", n.Self())
		require.Eventually(t, func() bool { return n.logs.countSince(mark, `"member":"c"`, `"message":"member left"`) > 0 },
			waitLong, 10*time.Millisecond, "%s logs c left (just after it shows it left)", n.Self())
		assert.Equal(t, 1, n.logs.countSince(mark, `"member":"c"`, `"message":"member left"`), "%s logs c left once", n.Self())
		assert.Zero(t, n.logs.countSince(mark, `"member":"c"`, `"message":"member failed`), "%s: c did not fail", n.Self())
	}
}

// Finding 3: a node away (cut off) longer than anything while another
// node's likes spread and that node dies still gets them when it returns.
// Version vectors forgot a gone origin after RetireAfter, and the returning
// node never learned of the gap; content digests do not forget.
func TestANodeAwayLongGetsADeadNodesLikes(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	p := startNode(t, "p", []string{a.Addr()}, nil)
	o := startNode(t, "o", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b", "o", "p"}, a, b, o, p)
	waitReady(t, a, b, o, p)

	heal := cutOff(t, p, a, b, o)
	like(o, "p", users("u", 40)...)
	waitConverged(t, map[string]int{"p": 40}, a, b, o)
	crash(t, o)
	waitMembers(t, []string{"a", "b"}, a, b) // o is gone for good
	heal()
	waitConverged(t, map[string]int{"p": 40}, p)
}

func TestJoinRetriesUntilSeedAppears(t *testing.T) {
	// An address nothing listens on yet (the test network keeps it: no other
	// process can take it), where the seed starts after the joiner failed.
	addr, err := testNet(t).Reserve()
	require.NoError(t, err)

	joiner := startNode(t, "joiner", []string{addr}, nil)
	require.Eventually(t, func() bool { return joiner.logs.count(`"message":"join failed"`) >= 2 },
		waitLong, 10*time.Millisecond, "the joiner tries, fails and retries")
	assert.False(t, joiner.Joined())
	seed := startNodeAt(t, addr, "seed", nil, nil)
	require.Eventually(t, joiner.Joined, waitLong, 10*time.Millisecond)
	waitMembers(t, []string{"joiner", "seed"}, joiner, seed)
}

// logLike logs l on a node that was never started, as Replicate at level
// one logs a like new to the node (Replicate itself needs a started node's
// store).
func logLike(n *Node, l store.Like) { n.logLikes([]store.Like{l}, true) }

// Logging never blocks: likes wait in the log; before Start nothing frames
// them, and past LogSize the oldest unframed ones are counted as overrun
// (they are stored, and reach the others by snapshot).
func TestLogNeverBlocksAndCountsOverrun(t *testing.T) {
	cfg := LocalConfig()
	cfg.NodeName = "x"
	cfg.LogSize = 16
	cfg.FastPath = FastPathGossip // frames go to the broadcast queue: no peers needed
	n, err := New(cfg)
	require.NoError(t, err)
	for i := 0; i < 40; i++ {
		logLike(n, store.Like{Post: "p", User: fmt.Sprint(i)})
	}
	n.flushLog() // as flushLoop would, with nobody to send to
	assert.Equal(t, uint64(24), n.Stats().LogOverrun)
	assert.NoError(t, n.Close(context.Background()), "closing a node never started is fine")
	assert.ErrorIs(t, n.Start(nil), ErrClosed)
}

// The log starts small and doubles only while likes wait unframed, keeping
// every one of them across each doubling; framing clears the slots, so no
// ids stay alive in it, and a burst over, it shrinks back.
func TestLogGrowsOnlyWhenLikesWaitAndForgetsFramedOnes(t *testing.T) {
	cfg := LocalConfig()
	cfg.NodeName = "x"
	cfg.LogSize = 4096
	cfg.FastPath = FastPathGossip
	n, err := New(cfg)
	require.NoError(t, err)
	require.Len(t, n.ring, initialLogRing)
	for i := 0; i < 3000; i++ {
		logLike(n, store.Like{Post: "p", User: fmt.Sprint(i)})
	}
	require.Len(t, n.ring, 4096, "1024, 2048, then 4096 as likes waited")
	for s := uint64(1); s <= 3000; s++ {
		require.Equal(t, fmt.Sprint(s-1), n.ring[s%4096].User, "every waiting like kept across the doublings")
	}
	n.flushLog()
	assert.Equal(t, uint64(3000), n.Stats().LikesQueued)
	assert.Zero(t, n.Stats().LogOverrun)
	for i, l := range n.ring {
		require.Equal(t, store.Like{}, l, "slot %d still holds a framed like", i)
	}
	for i := 0; i < 5000; i++ {
		logLike(n, store.Like{Post: "p", User: fmt.Sprint(i)})
	}
	require.Len(t, n.ring, 4096, "never past LogSize")
	n.flushLog()
	assert.Equal(t, uint64(5000-4096), n.Stats().LogOverrun)
	assert.Equal(t, uint64(3000+4096), n.Stats().LikesQueued)
	n.flushLog()
	require.Len(t, n.ring, 4096, "kept through a burst")
	n.ringGrown = n.ringGrown.Add(-ringShrinkAfter - time.Second)
	for i := 0; i < 2000; i++ {
		logLike(n, store.Like{Post: "p", User: fmt.Sprint(i)})
	}
	n.flushLog()
	require.Len(t, n.ring, 4096, "a flush that needed more than the first size: the burst goes on")
	n.ringGrown = n.ringGrown.Add(-ringShrinkAfter - time.Second)
	n.flushLog()
	require.Len(t, n.ring, initialLogRing, "back to its first size once the burst is over")
	logLike(n, store.Like{Post: "p", User: "after"})
	n.flushLog()
	assert.Equal(t, uint64(3000+4096+2000+1), n.Stats().LikesQueued)
	require.NoError(t, n.Close(context.Background()))
}

func TestConfigValidate(t *testing.T) {
	valid := LocalConfig()
	valid.NodeName = "n"
	require.NoError(t, valid.Validate())
	require.NoError(t, func() Config { c := DefaultConfig(); c.NodeName = "n"; return c }().Validate())
	tests := []struct {
		name  string
		tweak func(*Config)
		want  string // "" for valid; else what the error says after "cluster: invalid config: "
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "--node-name is empty"},
		{"bind addr", func(c *Config) { c.BindAddr = "nowhere" }, `--gossip-addr: "nowhere" is not an IP address`},
		{"bind port", func(c *Config) { c.BindPort = 70000 }, "--gossip-addr: port 70000 out of range"},
		{"advertise addr", func(c *Config) { c.AdvertiseAddr = "x.y" }, `--advertise-addr: "x.y" is not an IP address`},
		{"seed without port", func(c *Config) { c.Seeds = []string{"master"} }, `--join: seed "master": `},
		{"seed bad port", func(c *Config) { c.Seeds = []string{"master:0"} }, `--join: seed "master:0": bad port`},
		{"zero push/pull", func(c *Config) { c.PushPullInterval = 0 }, "--push-pull-interval must be positive, got 0s"},
		{"zero rejoin", func(c *Config) { c.RejoinInterval = 0 }, "--rejoin-interval must be positive, got 0s"},
		{"zero gossip", func(c *Config) { c.GossipInterval = 0 }, "--gossip-interval must be positive, got 0s"},
		{"zero probe interval", func(c *Config) { c.ProbeInterval = 0 }, "--probe-interval must be positive, got 0s"},
		{"zero probe timeout", func(c *Config) { c.ProbeTimeout = MinInterval - 1 }, "--probe-timeout must be positive, got 0s"},
		{"probe timeout at its bound", func(c *Config) { c.ProbeTimeout = MinInterval }, ""},
		{"zero flush", func(c *Config) { c.FlushInterval = 0 }, "--flush-interval must be positive, got 0s"},
		{"zero TCP timeout", func(c *Config) { c.TCPTimeout = 0 }, "TCPTimeout must be positive, got 0s"},
		{"probe timeout too long", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }, "--probe-timeout 100ms must be shorter than --probe-interval 100ms"},
		{"backoff inverted", func(c *Config) { c.JoinBackoffMax = c.JoinBackoffMin / 2 }, "join backoff"},
		{"packet at lower bound", func(c *Config) { c.PacketSize = MinPacketSize }, ""},
		{"packet at upper bound", func(c *Config) { c.PacketSize = MaxPacketSize }, ""},
		{"tiny packet", func(c *Config) { c.PacketSize = MinPacketSize - 1 }, "--packet-size must be from 512 to 65000, got 511"},
		{"huge packet", func(c *Config) { c.PacketSize = MaxPacketSize + 1 }, "--packet-size must be from 512 to 65000, got 65001"},
		{"log at lower bound", func(c *Config) { c.LogSize = MinLogSize }, ""},
		{"tiny log", func(c *Config) { c.LogSize = MinLogSize - 1 }, "--log-size must be at least 16, got 15"},
		{"no inbox", func(c *Config) { c.InboxSize = MinInboxSize - 1 }, "--inbox-size must be at least 1, got 0"},
		{"no queued frames", func(c *Config) { c.MaxQueuedFrames = MinQueuedFrames - 1 }, "--max-queued-frames must be at least 1, got 0"},
		{"sync interval at lower bound", func(c *Config) { c.SyncInterval = MinSyncInterval }, ""},
		{"sync interval at upper bound", func(c *Config) { c.SyncInterval = MaxSyncInterval }, ""},
		{"sync interval too short", func(c *Config) { c.SyncInterval = MinSyncInterval - 1 }, "--sync-interval must be from 10ms to 1m0s, got 9.999999ms"},
		{"sync interval too long", func(c *Config) { c.SyncInterval = MaxSyncInterval + 1 }, "--sync-interval must be from 10ms to 1m0s, got 1m0.000000001s"},
		{"sync timeout at lower bound", func(c *Config) { c.SyncTimeout = MinSyncTimeout }, ""},
		{"sync timeout at upper bound", func(c *Config) { c.SyncTimeout = MaxSyncTimeout }, ""},
		{"sync timeout too short", func(c *Config) { c.SyncTimeout = MinSyncTimeout - 1 }, "--sync-timeout must be from 100ms to 10m0s, got 99.999999ms"},
		{"sync timeout too long", func(c *Config) { c.SyncTimeout = MaxSyncTimeout + 1 }, "--sync-timeout must be from 100ms to 10m0s, got 10m0.000000001s"},
		{"sync chunk at lower bound", func(c *Config) { c.SyncChunkBytes = MinSyncChunkBytes }, ""},
		{"sync chunk at upper bound", func(c *Config) { c.SyncChunkBytes = MaxSyncChunkBytes }, ""},
		{"sync chunk too small", func(c *Config) { c.SyncChunkBytes = MinSyncChunkBytes - 1 }, "--sync-chunk-bytes must be from 4096 to 2097152, got 4095"},
		{"sync chunk too large", func(c *Config) { c.SyncChunkBytes = MaxSyncChunkBytes + 1 }, "--sync-chunk-bytes must be from 4096 to 2097152, got 2097153"},
		{"handoff at upper bound", func(c *Config) { c.HandoffTimeout = MaxHandoffTimeout }, ""},
		{"handoff negative", func(c *Config) { c.HandoffTimeout = -1 }, "--handoff-timeout must be from 0s to 10m0s, got -1ns"},
		{"handoff too long", func(c *Config) { c.HandoffTimeout = MaxHandoffTimeout + 1 }, "--handoff-timeout must be from 0s to 10m0s, got 10m0.000000001s"},
		{"leave negative", func(c *Config) { c.LeaveTimeout = -1 }, "LeaveTimeout must not be negative, got -1ns"},
		{"no gossip nodes", func(c *Config) { c.GossipNodes = 0 }, "GossipNodes, SuspicionMult and RetransmitMult must be at least 1"},
		{"key of 10 bytes", func(c *Config) { c.SecretKey = make([]byte, 10) }, "--gossip-key is 10 bytes; want 16, 24 or 32"},
		{"label at its bound", func(c *Config) { c.Label = strings.Repeat("l", MaxLabelBytes) }, ""},
		{"label too long", func(c *Config) { c.Label = strings.Repeat("l", MaxLabelBytes+1) }, "--cluster-label is 256 bytes; at most 255"},
		{"unknown fast path", func(c *Config) { c.FastPath = "carrier-pigeon" }, `--fast-path "carrier-pigeon": want "direct" or "gossip"`},
		{"tiny direct batch", func(c *Config) { c.DirectBatchBytes = 100 }, "link: invalid config: --direct-batch-bytes must be at least 1024, got 100"},
		{"no peer queue", func(c *Config) { c.PeerQueue = 0 }, "link: invalid config: --peer-queue must be at least 1, got 0"},
		{"no peer retry interval", func(c *Config) { c.PeerRetryInterval = 0 }, "link: invalid config: --peer-retry-interval must be from 1ms to 1s, got 0s"},
		{"peer retry interval too long", func(c *Config) { c.PeerRetryInterval = time.Minute }, "link: invalid config: --peer-retry-interval must be from 1ms to 1s, got 1m0s"},
		{"write timeout too long", func(c *Config) { c.Writes.Timeout = 6 * time.Second }, "acks: invalid config: --write-timeout must be from 1ms to 5s, got 6s"},
		{"breaker failures", func(c *Config) { c.Breaker.Failures = 0 }, "breaker: invalid config: --breaker-failures must be from 1 to 1000, got 0"},
		{"streams at lower bound", func(c *Config) { c.MaxStreams = MinStreams }, ""},
		{"streams at upper bound", func(c *Config) { c.MaxStreams = MaxStreamsLimit }, ""},
		{"no streams", func(c *Config) { c.MaxStreams = MinStreams - 1 }, "--max-streams must be from 1 to 65536, got 0"},
		{"too many streams", func(c *Config) { c.MaxStreams = MaxStreamsLimit + 1 }, "--max-streams must be from 1 to 65536, got 65537"},
		{"no streams per peer", func(c *Config) { c.MaxStreamsPerPeer = 0 }, "MaxStreamsPerPeer must be from 1 to 64, got 0"},
		{"too many streams per peer", func(c *Config) { c.MaxStreamsPerPeer = 65 }, "MaxStreamsPerPeer must be from 1 to 64, got 65"},
		{"handshakes at lower bound", func(c *Config) { c.MaxHandshakes = MinHandshakes }, ""},
		{"handshakes at upper bound", func(c *Config) { c.MaxHandshakes = MaxHandshakesLimit }, ""},
		{"no handshakes", func(c *Config) { c.MaxHandshakes = MinHandshakes - 1 }, "--max-handshakes must be from 1 to 4096, got 0"},
		{"too many handshakes", func(c *Config) { c.MaxHandshakes = MaxHandshakesLimit + 1 }, "--max-handshakes must be from 1 to 4096, got 4097"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.tweak(&c)
			err := c.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, ErrConfig)
			assert.ErrorContains(t, err, "cluster: invalid config: "+tt.want)
		})
	}
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// A full gossip frame must still fit one packet with AES-GCM and a long
// label; a direct batch must pass encrypted too.
func TestEncryptedClusterConvergesByGossip(t *testing.T) {
	secure := func(c *Config) {
		gossipOnly(c)
		c.SecretKey = key(1)
		c.Label = strings.Repeat("l", 200)
	}
	a := startNode(t, "a", nil, secure)
	b := startNode(t, "b", []string{a.Addr()}, secure)
	waitMembers(t, []string{"a", "b"}, a, b)
	like(a, strings.Repeat("p", 256), users(strings.Repeat("u", 250), 100)...)
	waitConverged(t, map[string]int{strings.Repeat("p", 256): 100}, a, b)
}

// A node with the wrong key, no key, or another label neither joins nor
// changes any count, even when it knows a member's address.
func TestIntrudersCannotJoinOrInjectLikes(t *testing.T) {
	secure := func(c *Config) { c.SecretKey = key(1) }
	a := startNode(t, "a", nil, secure)
	b := startNode(t, "b", []string{a.Addr()}, secure)
	waitMembers(t, []string{"a", "b"}, a, b)

	intruders := map[string]func(*Config){
		"wrong-key":   func(c *Config) { c.SecretKey = key(2) },
		"no-key":      func(c *Config) { c.SecretKey = nil },
		"other-label": func(c *Config) { c.SecretKey = key(1); c.Label = "other" },
	}
	var started []*testNode
	for name, tweak := range intruders {
		x := startNode(t, name, []string{a.Addr(), b.Addr()}, tweak)
		like(x, "p", users(name, 20)...)
		started = append(started, x)
	}
	assert.Never(t, func() bool {
		for _, x := range started {
			if x.Joined() || len(x.Members()) > 1 {
				return true
			}
		}
		return a.store.Count("p") != 0 || b.store.Count("p") != 0 ||
			len(a.Members()) != 2 || len(b.Members()) != 2
	}, 2*time.Second, 50*time.Millisecond, "an intruder joined or changed a count")

	// Control: the same harness with the right key and label does join, so
	// the silence above is the encryption's doing.
	friend := startNode(t, "friend", []string{a.Addr()}, secure)
	like(friend, "p", "f1")
	waitMembers(t, []string{"a", "b", "friend"}, a, b, friend)
	waitConverged(t, map[string]int{"p": 1}, a, b, friend)
}

func TestEncryptedDirectFastPath(t *testing.T) {
	secure := func(c *Config) { noPushPull(c); c.SecretKey = key(3) }
	a := startNode(t, "a", nil, secure)
	b := startNode(t, "b", []string{a.Addr()}, secure)
	waitMembers(t, []string{"a", "b"}, a, b)
	waitReady(t, a, b)
	like(a, "p", users("u", 5000)...)
	waitConverged(t, map[string]int{"p": 5000}, a, b)
	assert.Zero(t, b.Stats().SyncPulled)
}

// Likes whose origin crashed before everyone had them still reach every
// node: any two nodes repair each other, whoever the origin was.
func TestCrashedOriginsLikesReachEveryone(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	c := startNode(t, "c", []string{a.Addr()}, func(c *Config) { c.Seeds = nil })
	require.NoError(t, func() error { _, err := c.ml.Join([]string{a.Addr()}); return err }())
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	like(b, "warm", "x")
	waitConverged(t, map[string]int{"warm": 1}, a, b, c)

	heal := cutOff(t, c, a)
	like(a, "p", users("u", 300)...)
	waitConverged(t, map[string]int{"p": 300}, a, b)
	heal()
	crash(t, a)
	waitConverged(t, map[string]int{"p": 300}, b, c)
	require.Eventually(t, func() bool { return c.Stats().SyncPulled+b.Stats().SyncPushed > 0 }, waitLong, 10*time.Millisecond,
		"the origin is gone: anti-entropy with b healed c (counted when the session ends)")
}

// A member that joins gets what every member holds at once, not a sync
// interval later: with periodic sync slowed to a minute, d joins through a,
// which lost b's likes, and still gets them: once synced from one peer, d
// compares with every other peer at once (and b's push to a, urged when a
// answers again, may come first).
func TestJoinTriggersAnImmediateExchange(t *testing.T) {
	a := startNode(t, "a", nil, noPushPull)
	b := startNode(t, "b", []string{a.Addr()}, noPushPull)
	waitMembers(t, []string{"a", "b"}, a, b)
	like(a, "warm", "x")
	like(b, "warm", "y")
	waitConverged(t, map[string]int{"warm": 2}, a, b)
	// b's own full sync must be over before the cut: a session cut in
	// flight waits out SyncTimeout, and an unsynced b is no one's source.
	waitReady(t, a, b)

	heal := cutOff(t, a, b)
	like(b, "p", users("u", 100)...)
	heal()
	assert.Equal(t, 0, a.store.Count("p"), "a lost the fast path and syncs once a minute")

	d := startNode(t, "d", []string{a.Addr()}, noPushPull)
	waitConverged(t, map[string]int{"p": 100, "warm": 2}, b, d)
}

// A join clears a lone node's alone at once: likes logged between the join
// and the next flush are logged for the new peer, not counted sent to no
// one. (Called here as memberlist calls it; z is never reached.)
func TestAJoinEndsALoneNodesSkippingAtOnce(t *testing.T) {
	a, isAlone := startAlone(t)
	zAddr, err := testNet(t).Reserve() // nothing attached: dials are refused
	require.NoError(t, err)
	host, port, _ := net.SplitHostPort(zAddr)
	zPort, _ := strconv.Atoi(port)
	a.memberEvents().NotifyJoin(&memberlist.Node{Name: "z", Addr: net.ParseIP(host), Port: uint16(zPort)})
	require.False(t, isAlone(), "the join cleared it, before any flush")
	before := a.Stats().LoggedAlone
	like(a, "p", "u")
	assert.Equal(t, before, a.Stats().LoggedAlone, "logged for z, not counted sent to no one")
}

// A peer that cannot be reached costs one failed send, not one per queued
// batch: the rest of its queue is dropped and left to repair.
func TestUnreachablePeerCostsOneFailedSend(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	gone, err := testNet(t).Reserve() // nothing attached: dials are refused
	require.NoError(t, err)
	host, port, _ := net.SplitHostPort(gone)
	pn, _ := strconv.Atoi(port)
	a.memberEvents().NotifyJoin(&memberlist.Node{Name: "gone", Addr: net.ParseIP(host), Port: uint16(pn)})
	frames := make([]link.Frame, 10)
	for i := range frames {
		frames[i] = link.Frame{Data: []byte{msgLikes}} // never joined: not a whole frame
	}
	a.sendDirect(frames)
	require.Eventually(t, func() bool { return a.writes.pending() == 0 }, waitLong, 5*time.Millisecond)
	st := a.Stats()
	assert.Equal(t, uint64(1), st.DirectErrors)
	assert.Equal(t, uint64(9), st.PeerDropped)
	assert.Equal(t, "down", a.writes.peer("gone").Phase, "pinged until it answers")
}

// A node with no peer to send to holds no log and builds no frames for
// likes no write waits on: they count as framed at once. Once a peer is there, the next flush sees it and
// likes take the fast path again.
func TestALoneNodeLogsNothingUntilAPeerComes(t *testing.T) {
	a, isAlone := startAlone(t)
	like(a, "p1", users("u", 5000)...)
	a.logMu.Lock()
	assert.Equal(t, initialLogRing, len(a.ring), "the log never grew")
	assert.Equal(t, a.seq, a.framed, "every like counted framed")
	assert.GreaterOrEqual(t, a.seq, uint64(5000), "dots are still given")
	seq := a.seq
	a.logMu.Unlock()
	assert.Zero(t, a.Stats().LikesQueued, "no frame built for nobody")
	assert.Equal(t, seq, a.Stats().LoggedAlone, "each counted as logged alone")
	a.logLikes([]store.Like{{Post: "p0", User: "w"}}, false)
	require.Eventually(t, func() bool { return a.Stats().LikesQueued == 1 }, waitLong, 10*time.Millisecond,
		"a like a write waits on is logged and framed, even alone")

	b := startNode(t, "b", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b"}, a, b)
	require.Eventually(t, func() bool { return !isAlone() }, waitLong, 10*time.Millisecond, "a flush saw b")
	like(a, "p2", users("v", 300)...)
	waitConverged(t, map[string]int{"p1": 5000, "p2": 300}, a, b)
	require.Eventually(t, func() bool { return a.Stats().LikesQueued >= 301 && b.Stats().LikesReceived >= 300 },
		waitLong, 10*time.Millisecond, "p2's likes took the fast path (received: anti-entropy may have applied them first)")
}
