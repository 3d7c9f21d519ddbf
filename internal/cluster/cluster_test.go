package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

type testNode struct {
	*Node
	store *store.Store
}

// startNode runs a real memberlist on 127.0.0.1 with a free port and
// millisecond intervals; tweak adjusts the config first.
func startNode(t *testing.T, name string, seeds []string, tweak func(*Config)) *testNode {
	t.Helper()
	cfg := LocalConfig()
	cfg.NodeName = name
	cfg.Seeds = seeds
	cfg.Logger = testLogger(t)
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := New(cfg)
	require.NoError(t, err)
	st, err := store.New(store.DefaultConfig(), n)
	require.NoError(t, err)
	require.NoError(t, n.Start(st))
	t.Cleanup(func() { cleanupClose(t, n) })
	return &testNode{Node: n, store: st}
}

// testLogger logs through t until the test ends. memberlist's probe
// goroutines may still log after Shutdown returns (it does not wait for
// them), and t.Log after the end panics.
func testLogger(t *testing.T) zerolog.Logger {
	w := &quietAfterTest{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return zerolog.New(w).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

type quietAfterTest struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *quietAfterTest) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// cleanupClose closes a node at the end of a test. The last node of a
// cluster has no one to hand off to and would wait out its whole bound, so
// the bound is short: tests of the hand-off call closeNode themselves.
func cleanupClose(t *testing.T, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	assert.NoError(t, n.Close(ctx))
}

func closeNode(t *testing.T, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.NoError(t, n.Close(ctx))
}

// crash stops a node the way SIGKILL would: no hand-off, no leave.
func crash(t *testing.T, n *testNode) {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		require.NoError(t, n.ml.Shutdown())
		n.cancel()
		close(n.flushCh)
		n.flushWG.Wait()
		n.wg.Wait()
	})
}

func aliveNames(n *testNode) []string {
	var out []string
	for _, m := range n.Members() {
		if m.State == "alive" {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}

// waitReady waits until every node is synced, so that likes made after it
// travel on the fast path, not in a joining node's full sync.
func waitReady(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		require.Eventually(t, n.Ready, 15*time.Second, 10*time.Millisecond, "%s never became ready", n.Self())
	}
}

func waitMembers(t *testing.T, want []string, nodes ...*testNode) {
	t.Helper()
	sort.Strings(want)
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if strings.Join(aliveNames(n), ",") != strings.Join(want, ",") {
				return false
			}
		}
		return true
	}, 15*time.Second, 20*time.Millisecond, "members never became %v", want)
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
	}, 15*time.Second, 20*time.Millisecond)
}

func like(n *testNode, post string, users ...string) {
	for _, u := range users {
		n.store.Like(post, u)
	}
}

func users(prefix string, k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

// noPushPull leaves the fast path as the only path between nodes once they
// are synced (a joining node still takes its full sync at once). The fast
// path alone is best effort: a live node wrongly declared dead under CPU
// starvation misses frames until anti-entropy repairs it. So these tests
// also make the failure detector lenient, to test the fast path and not the
// detector.
func noPushPull(c *Config) {
	c.PushPullInterval = time.Hour
	c.SyncInterval = time.Minute
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
	waitReady(t, a, b, c)

	like(a, "p1", users("u", 3000)...)
	like(b, "p1", users("u", 3000)...)
	like(c, "p2", users("w", 500)...)
	waitConverged(t, map[string]int{"p1": 3000, "p2": 500}, a, b, c)
	for _, n := range []*testNode{a, b, c} {
		st := n.Stats()
		assert.Zero(t, st.SyncPulled, "%s: the fast path alone", n.Self())
		assert.Zero(t, st.DirectErrors+st.PeerDropped, n.Self())
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
	var viaGossip uint64
	for _, n := range []*testNode{a, b, c} {
		viaGossip += n.Stats().LikesApplied
	}
	assert.Positive(t, viaGossip, "gossip carried likes, not only push/pull")
}

// memberlist never forwards user messages: each receiver must re-broadcast
// exactly the likes that gossip brought it new, once, and nothing that came
// by push/pull.
func TestReceiversForwardNewLikesOnce(t *testing.T) {
	a := startNode(t, "a", nil, gossipFastPath)
	b := startNode(t, "b", []string{a.Addr()}, gossipFastPath)
	c := startNode(t, "c", []string{a.Addr()}, gossipFastPath)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	like(a, "p", users("u", 100)...)
	waitConverged(t, map[string]int{"p": 100}, a, b, c)
	// A forwarded like waits up to a flush interval in the frame builder.
	require.Eventually(t, func() bool {
		sb, sc := b.Stats(), c.Stats()
		return sb.LikesQueued == sb.LikesApplied && sc.LikesQueued == sc.LikesApplied
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(5 * LocalConfig().FlushInterval) // settle: no late extra forward
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
	require.Eventually(t, c.Ready, 5*time.Second, 10*time.Millisecond, "ready once the full sync ended")
}

// A node that loses every broadcast must still converge through push/pull.
func TestPushPullHealsLostBroadcasts(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	c := startNode(t, "c", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)
	c.dropInbound.Store(true)

	like(a, "p1", users("u", 200)...)
	like(b, "p2", users("u", 30)...)
	waitConverged(t, map[string]int{"p1": 200, "p2": 30}, a, b, c)
	assert.Zero(t, c.Stats().LikesApplied, "c applied nothing from gossip")
	assert.Positive(t, c.Stats().SyncPulled)
}

func TestSeedRestartWithNewIdentityEndsInOneCluster(t *testing.T) {
	seed := startNode(t, "seed-1", nil, nil)
	seedAddr := seed.Addr()
	_, portStr, _ := strings.Cut(seedAddr, ":")
	var port int
	_, err := fmt.Sscan(portStr, &port)
	require.NoError(t, err)

	w1 := startNode(t, "w1", []string{seedAddr}, nil)
	w2 := startNode(t, "w2", []string{seedAddr}, nil)
	waitMembers(t, []string{"seed-1", "w1", "w2"}, seed, w1, w2)
	like(w1, "p", users("u", 40)...)
	waitConverged(t, map[string]int{"p": 40}, seed, w1, w2)

	crash(t, seed)
	waitMembers(t, []string{"w1", "w2"}, w1, w2)

	// The master comes back at the same address with a new name, an empty
	// store and no seeds of its own: on its own it would be a second cluster.
	reborn := startNode(t, "seed-2", nil, func(c *Config) { c.BindPort = port })
	waitMembers(t, []string{"seed-2", "w1", "w2"}, reborn, w1, w2)
	waitConverged(t, map[string]int{"p": 40}, reborn)
}

func TestCloseLeavesAndOthersSeeIt(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	c := startNode(t, "c", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b", "c"}, a, b, c)

	like(c, "p", users("u", 25)...)
	closeNode(t, c.Node)
	assert.NoError(t, c.Close(context.Background()), "Close is idempotent")
	// The hand-off put every like c acknowledged on the others before it left.
	waitConverged(t, map[string]int{"p": 25}, a, b)
	waitMembers(t, []string{"a", "b"}, a, b)
}

func TestJoinRetriesUntilSeedAppears(t *testing.T) {
	// Reserve a port, then start the seed there only after the joiner began.
	probe := startNode(t, "probe", nil, nil)
	addr := probe.Addr()
	_, portStr, _ := strings.Cut(addr, ":")
	var port int
	_, err := fmt.Sscan(portStr, &port)
	require.NoError(t, err)
	crash(t, probe)

	joiner := startNode(t, "joiner", []string{addr}, nil)
	time.Sleep(100 * time.Millisecond) // let a few joins fail first
	assert.False(t, joiner.Joined())
	seed := startNode(t, "seed", nil, func(c *Config) { c.BindPort = port })
	require.Eventually(t, joiner.Joined, 10*time.Second, 10*time.Millisecond)
	waitMembers(t, []string{"joiner", "seed"}, joiner, seed)
}

// LikeAdded never blocks: likes wait in the log; before Start nothing frames
// them, and past LogSize the oldest unframed ones are counted as overrun
// (they are stored, and reach the others by anti-entropy).
func TestLogNeverBlocksAndCountsOverrun(t *testing.T) {
	cfg := LocalConfig()
	cfg.NodeName = "x"
	cfg.LogSize = 16
	cfg.FastPath = FastPathGossip // frames go to the broadcast queue: no peers needed
	n, err := New(cfg)
	require.NoError(t, err)
	for i := 0; i < 40; i++ {
		n.LikeAdded(store.Like{Post: "p", User: fmt.Sprint(i)})
	}
	n.flushLog() // as flushLoop would, with nobody to send to
	assert.Equal(t, uint64(24), n.Stats().LogOverrun)
	assert.NoError(t, n.Close(context.Background()), "closing a node never started is fine")
	assert.ErrorIs(t, n.Start(nil), ErrClosed)
}

func TestConfigValidate(t *testing.T) {
	valid := LocalConfig()
	valid.NodeName = "n"
	require.NoError(t, valid.Validate())
	require.NoError(t, func() Config { c := DefaultConfig(); c.NodeName = "n"; return c }().Validate())
	tests := []struct {
		name  string
		tweak func(*Config)
	}{
		{"no name", func(c *Config) { c.NodeName = "" }},
		{"bind addr", func(c *Config) { c.BindAddr = "nowhere" }},
		{"bind port", func(c *Config) { c.BindPort = 70000 }},
		{"advertise addr", func(c *Config) { c.AdvertiseAddr = "x.y" }},
		{"seed without port", func(c *Config) { c.Seeds = []string{"master"} }},
		{"seed bad port", func(c *Config) { c.Seeds = []string{"master:0"} }},
		{"zero push/pull", func(c *Config) { c.PushPullInterval = 0 }},
		{"probe timeout too long", func(c *Config) { c.ProbeTimeout = c.ProbeInterval }},
		{"backoff inverted", func(c *Config) { c.JoinBackoffMax = c.JoinBackoffMin / 2 }},
		{"tiny packet", func(c *Config) { c.PacketSize = 100 }},
		{"tiny log", func(c *Config) { c.LogSize = 4 }},
		{"sync interval too short", func(c *Config) { c.SyncInterval = time.Millisecond }},
		{"sync chunk too small", func(c *Config) { c.SyncChunkBytes = 100 }},
		{"no gossip nodes", func(c *Config) { c.GossipNodes = 0 }},
		{"key of 10 bytes", func(c *Config) { c.SecretKey = make([]byte, 10) }},
		{"label too long", func(c *Config) { c.Label = strings.Repeat("l", 256) }},
		{"unknown fast path", func(c *Config) { c.FastPath = "carrier-pigeon" }},
		{"tiny direct batch", func(c *Config) { c.DirectBatchBytes = 100 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.tweak(&c)
			assert.ErrorIs(t, c.Validate(), ErrConfig)
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

	c.dropInbound.Store(true)
	like(a, "p", users("u", 300)...)
	waitConverged(t, map[string]int{"p": 300}, a, b)
	crash(t, a)
	waitConverged(t, map[string]int{"p": 300}, b, c)
	assert.Positive(t, c.Stats().SyncPulled+b.Stats().SyncPushed, "the origin is gone: anti-entropy with b healed c")
}

// A peer that cannot be reached costs one failed send, not one per queued
// batch: the rest of its queue is dropped and left to repair.
func TestUnreachablePeerCostsOneFailedSend(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	p := a.newPeer(memberlist.Node{Name: "gone", Addr: net.IPv4(127, 0, 0, 1), Port: 1}) // nothing listens on port 1
	for i := 0; i < 10; i++ {
		a.enqueue(p, []byte{msgLikes})
	}
	close(p.queue)
	a.runPeer(p)
	st := a.Stats()
	assert.Equal(t, uint64(1), st.DirectErrors)
	assert.Equal(t, uint64(9), st.PeerDropped)
	assert.Zero(t, a.directPending.Load())
}
