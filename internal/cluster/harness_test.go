package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/faultnet"
	"github.com/likesd/likesd/internal/store"
)

// The test harness: real memberlists on 127.0.0.1, each on a faultnet
// transport, so a test can cut, isolate or crash a node, and start another
// at the same address without racing for the port.

// testConfig is LocalConfig with a failure detector that does not fire
// under a busy machine: LocalConfig's 50 ms probe timeout suspects live
// nodes when the CPU is starved (a 2-core machine running the race detector
// beside other jobs), and tests that are not about failure detection must
// not fail because of it. A node that is really gone is still declared
// failed in about 4 s (probe 0.5 s, then suspicion 6 × 0.5 s with 3 nodes).
func testConfig() Config {
	c := LocalConfig()
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 400 * time.Millisecond
	c.SuspicionMult = 6
	c.TCPTimeout = 5 * time.Second   // a push/pull on a starved machine
	c.SyncTimeout = 10 * time.Second // a sync session's answers, likewise
	c.LeaveTimeout = 2 * time.Second
	return c
}

// waitLong bounds waits for the cluster to settle: generous, because a
// starved machine is slow, and a wait ends as soon as its condition holds.
const waitLong = 60 * time.Second

var networks sync.Map // *testing.T → *faultnet.Network

// testNet is the test's network, created on first use and closed after
// every node of the test (cleanups run last-in first-out).
func testNet(t *testing.T) *faultnet.Network {
	t.Helper()
	if n, ok := networks.Load(t); ok {
		return n.(*faultnet.Network)
	}
	n := faultnet.New(uint64(time.Now().UnixNano()))
	networks.Store(t, n)
	t.Cleanup(func() { networks.Delete(t); n.Close() })
	return n
}

type testNode struct {
	*Node
	store *store.Store
	logs  *logBuffer
}

// startNode starts a node on a new address of the test's network.
func startNode(t *testing.T, name string, seeds []string, tweak func(*Config)) *testNode {
	t.Helper()
	addr, err := testNet(t).Reserve()
	require.NoError(t, err)
	return startNodeAt(t, addr, name, seeds, tweak)
}

// startNodeAt starts a node at addr: a reserved address, or that of a
// crashed node.
func startNodeAt(t *testing.T, addr, name string, seeds []string, tweak func(*Config)) *testNode {
	t.Helper()
	return startNodeJournal(t, addr, name, seeds, tweak, nil)
}

// startNodeJournal starts a node at addr whose store logs to j (nil: none).
func startNodeJournal(t *testing.T, addr, name string, seeds []string, tweak func(*Config), j store.Journal) *testNode {
	t.Helper()
	tr, err := testNet(t).Attach(addr)
	require.NoError(t, err)
	cfg := testConfig()
	cfg.NodeName = name
	cfg.Seeds = seeds
	cfg.Transport = tr
	logs := &logBuffer{}
	cfg.Logger = testLogger(t, logs)
	if tweak != nil {
		tweak(&cfg)
	}
	n, err := New(cfg)
	require.NoError(t, err)
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	if j != nil {
		st.SetJournal(j)
	}
	require.NoError(t, n.Start(st))
	t.Cleanup(func() { cleanupClose(t, n) })
	return &testNode{Node: n, store: st, logs: logs}
}

// write takes a like on n the way production does (internal/api's like
// handler): the store first, then Replicate at level with what the store
// said was new. Every like a cluster test makes goes through here or
// through Replicate itself; tests that want a like only in a store, which
// the fast path never saw, say so and Merge it into the store directly.
func write(n *testNode, level acks.Level, post, user string) acks.Result {
	added, _ := n.store.Like(post, user)
	res, _ := n.Replicate(context.Background(), level, []store.Like{{Post: post, User: user}}, []bool{added})
	return res
}

// like takes likes on n as a client asking ?w=1 has them taken: stored,
// logged for the fast path when new, no wait for acknowledgements.
func like(n *testNode, post string, users ...string) {
	for _, u := range users {
		write(n, acks.One, post, u)
	}
}

// logBuffer keeps a node's log lines for assertions.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
}

// count is how many lines contain every one of parts.
func (b *logBuffer) count(parts ...string) int { return b.countSince(0, parts...) }

// mark is where the next line will be, for countSince.
func (b *logBuffer) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// countSince counts like count, from the line at mark on.
func (b *logBuffer) countSince(mark int, parts ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := 0
	for _, l := range b.lines[mark:] {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			k++
		}
	}
	return k
}

// testLogger logs through t until the test ends, and into logs. memberlist's
// probe goroutines may still log after Shutdown returns (it does not wait
// for them), and t.Log after the end panics.
func testLogger(t *testing.T, logs *logBuffer) zerolog.Logger {
	w := &quietAfterTest{t: t, logs: logs}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return zerolog.New(w).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

type quietAfterTest struct {
	mu   sync.Mutex
	t    *testing.T
	logs *logBuffer
	done bool
}

func (w *quietAfterTest) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if w.logs != nil {
		w.logs.add(line)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(line)
	}
	return len(p), nil
}

// cleanupClose closes a node at the end of a test. The last node of a
// cluster has no one to hand off to and would wait out its whole bound, so
// the bound is short (and Close may be cut short by it): tests of the
// hand-off call closeNode themselves. It waits for the shutdown to end, so
// that the test's network closes after the node's memberlist.
func cleanupClose(t *testing.T, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); !errors.Is(err, ErrCloseCut) {
		assert.NoError(t, err)
	}
	if n.closeDone != nil {
		select {
		case <-n.closeDone:
		case <-time.After(waitLong):
			assert.Fail(t, "the shutdown did not end", n.Self())
		}
	}
}

// waitReady waits until every node is synced, so that likes made after it
// travel on the fast path, not in a joining node's full sync.
func waitReady(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		require.Eventually(t, n.Ready, waitLong, 10*time.Millisecond, "%s never became ready", n.Self())
	}
}

func closeNode(t *testing.T, n *Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.NoError(t, n.Close(ctx))
}

// crash stops a node the way SIGKILL would: no hand-off, no leave. Its
// address stays reserved on the test's network.
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

// stateOf is how n sees the member called name ("" if it does not list it).
func stateOf(n *testNode, name string) string {
	for _, m := range n.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// cutOff takes victim's network down (packets lost, streams refused) and
// returns the heal: it waits until every one of senders has sent or given
// up every batch it had for victim (so nothing queued during the cut
// reaches it on the fast path afterwards), then heals the network.
func cutOff(t *testing.T, victim *testNode, senders ...*testNode) (heal func()) {
	t.Helper()
	testNet(t).Down(victim.Addr())
	return func() {
		t.Helper()
		for _, s := range senders {
			require.Eventually(t, func() bool { return allSentOrDropped(s) }, waitLong, 10*time.Millisecond,
				"%s gave up its batches for %s", s.Self(), victim.Self())
		}
		testNet(t).Heal()
	}
}

// startAlone starts a node with no peer and waits until a flush has found
// none; isAlone reads its alone flag.
func startAlone(t *testing.T) (a *testNode, isAlone func() bool) {
	t.Helper()
	a = startNode(t, "a", nil, nil)
	isAlone = func() bool {
		a.logMu.Lock()
		defer a.logMu.Unlock()
		return a.alone
	}
	require.Eventually(t, isAlone, waitLong, 10*time.Millisecond, "a flush found no peer")
	return a, isAlone
}

// allSentOrDropped reports whether n framed every like it logged (or, alone,
// counted it sent to no one) and every batch it queued was sent or given
// up (queueFrame counts a frame after queueing it, and logLikes counts a
// like logged alone after its seq, so the order of these reads makes the
// answer exact).
func allSentOrDropped(n *testNode) bool {
	st := n.Stats()
	n.logMu.Lock()
	seq := n.seq
	n.logMu.Unlock()
	return st.LikesQueued+st.LogOverrun+st.LoggedAlone >= seq && n.writes.pending() == 0
}
