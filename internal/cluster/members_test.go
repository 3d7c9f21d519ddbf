package cluster

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tp(name string, port uint16, origin uint64) peer {
	return peer{name: name, ip: net.IPv4(10, 0, 0, 1), port: port, origin: origin, hasOrigin: true}
}

// The table's transitions, on a clock of its own.
func TestMemberTableStates(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tab := newMemberTable("self", time.Minute)
	tab.joined(tp("self", 1, 1), false, t0)
	tab.joined(tp("a", 2, 2), false, t0)
	tab.joined(tp("b", 3, 3), false, t0)
	tab.joined(tp("c", 4, 4), false, t0)

	assert.True(t, tab.suspected("a", t0))
	assert.False(t, tab.suspected("self", t0), "never suspects itself")
	assert.True(t, tab.answered("a", t0))
	assert.True(t, tab.suspected("a", t0))

	assert.True(t, tab.updated(tp("b", 3, 3), true), "b announces its leave")
	g, changed := tab.gone("b", t0)
	assert.True(t, changed)
	assert.Equal(t, stateLeft, g.state)
	g, changed = tab.gone("a", t0)
	assert.True(t, changed)
	assert.Equal(t, stateDead, g.state, "a suspect that goes without a word failed")
	_, changed = tab.gone("a", t0)
	assert.False(t, changed, "gone once")
	assert.False(t, tab.suspected("a", t0), "a dead member is not suspected")
	assert.False(t, tab.answered("a", t0), "nor revived by a probe")

	// c restarts at its address as c2: c is dead at once, never a target.
	replaced, stale := tab.joined(tp("c2", 4, 5), false, t0)
	assert.False(t, stale)
	require.Len(t, replaced, 1)
	assert.Equal(t, "c", replaced[0].name)

	want := []Member{
		{Name: "a", Addr: "10.0.0.1:2", State: "dead"},
		{Name: "b", Addr: "10.0.0.1:3", State: "left"},
		{Name: "c", Addr: "10.0.0.1:4", State: "dead"},
		{Name: "c2", Addr: "10.0.0.1:4", State: "alive"},
		{Name: "self", Addr: "10.0.0.1:1", State: "alive"},
	}
	assert.Equal(t, want, tab.list(t0))
	names := func(ps []peer) (out []string) {
		for _, p := range ps {
			out = append(out, p.name)
		}
		return out
	}
	assert.ElementsMatch(t, []string{"a", "c2"}, names(tab.sendTargets(t0, time.Second)),
		"a failed a moment ago and may come back; b left; c's address is taken")
	assert.ElementsMatch(t, []string{"c2"}, names(tab.sendTargets(t0.Add(time.Second), time.Second)))
	assert.ElementsMatch(t, []string{"c2"}, names(tab.peers(stateAlive, stateSuspect)), "the peers anti-entropy syncs with: never itself")
	_, ok := tab.member("a")
	assert.False(t, ok)

	_, stale = tab.joined(tp("past-self", 1, 9), false, t0)
	assert.True(t, stale, "news of a member at this node's address is stale")
	assert.Equal(t, Member{Name: "past-self", Addr: "10.0.0.1:1", State: "dead"}, tab.list(t0)[4])

	assert.Equal(t, want[3:], tab.list(t0.Add(2*time.Minute)), "gone members are forgotten after forgetAfter")
}

func TestSuspectLineParsing(t *testing.T) {
	name, ok := suspectOf([]byte("Suspect node a-1 has failed, no acks received"))
	assert.True(t, ok)
	assert.Equal(t, "node a-1", name)
	_, ok = suspectOf([]byte("Marking a as failed, suspect timeout reached (0 peer confirmations)"))
	assert.False(t, ok)
}

// Finding 5: memberlist rewrites the nodes Members() hands out in place
// (aliveNode) and never sets their State. Reading membership while a member
// re-advertises itself must not race (go test -race fails on the old
// Members, which read memberlist's nodes), and must show what it is.
func TestMembersReadWhileMemberlistRewritesThem(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b"}, a, b)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // b reads its view as /v1/cluster, the fast path and anti-entropy do
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = b.Members()
			_ = b.syncPeers()
			_ = b.members.peers(stateAlive)
			_ = b.missingSeeds(t.Context())
		}
	}()
	for i := 0; i < 20; i++ { // a re-advertises: every peer rewrites its node
		_ = a.ml.UpdateNode(100 * time.Millisecond) // sent on, even when the wait times out
	}
	close(stop)
	wg.Wait()
	got := b.Members()
	require.Len(t, got, 2)
	assert.Equal(t, []string{"a", a.Addr(), "b", b.Addr()}, []string{got[0].Name, got[0].Addr, got[1].Name, got[1].Addr})
	assert.Contains(t, []string{"alive", "suspect"}, got[0].State, "a suspect at worst (a starved machine's probes time out)")
}

// Finding 5: a member whose network is cut shows suspect, then dead, and
// the log says it failed; one that closes shows left, and the log says it
// left. (memberlist v0.7.0's Node.State reads alive for all of them.)
func TestMembersShowSuspectDeadAndLeft(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	c := startNode(t, "c", []string{a.Addr()}, nil)
	d := startNode(t, "d", []string{a.Addr()}, nil)
	waitMembers(t, []string{"a", "b", "c", "d"}, a, b, c, d)

	// (A starved machine may declare a live node failed before: count from here.)
	markA, markB := a.logs.mark(), b.logs.mark()
	testNet(t).Isolate(c.Addr())
	require.Eventually(t, func() bool { return stateOf(a, "c") == "suspect" }, waitLong, 10*time.Millisecond,
		"a's probes of c get no answer")
	require.Eventually(t, func() bool { return stateOf(a, "c") == "dead" && stateOf(b, "c") == "dead" },
		waitLong, 10*time.Millisecond, "c is declared failed")

	closeNode(t, d.Node)
	require.Eventually(t, func() bool { return stateOf(a, "d") == "left" && stateOf(b, "d") == "left" },
		waitLong, 10*time.Millisecond, "d left")
	for n, mark := range map[*testNode]int{a: markA, b: markB} {
		assert.Positive(t, n.logs.countSince(mark, `"member":"c"`, `"message":"member failed"`), "%s: c failed", n.Self())
		assert.Zero(t, n.logs.countSince(mark, `"member":"c"`, `"message":"member left"`), "%s: c did not leave", n.Self())
		assert.Equal(t, 1, n.logs.countSince(mark, `"member":"d"`, `"message":"member left"`), "%s: d left", n.Self())
		assert.Zero(t, n.logs.countSince(mark, `"member":"d"`, `"message":"member failed`), "%s: d did not fail", n.Self())
	}
}

// Finding 8: a node restarted on its address under a new name makes the
// old name dead at once, not when memberlist's probes of it time out (here
// made slow: SuspicionMult 30 is about 15 s).
func TestRestartOnSameAddressMarksOldIdentityDeadAtOnce(t *testing.T) {
	slowDetector := func(c *Config) { c.SuspicionMult = 30 }
	a := startNode(t, "a", nil, slowDetector)
	b := startNode(t, "b", []string{a.Addr()}, slowDetector)
	old := startNode(t, "old", []string{a.Addr()}, slowDetector)
	waitMembers(t, []string{"a", "b", "old"}, a, b, old)

	addr := old.Addr()
	crash(t, old)
	start := time.Now()
	reborn := startNodeAt(t, addr, "new", []string{a.Addr()}, slowDetector)
	require.Eventually(t, func() bool {
		return stateOf(a, "old") == "dead" && stateOf(b, "old") == "dead" &&
			stateOf(a, "new") == "alive" && stateOf(b, "new") == "alive"
	}, waitLong, 10*time.Millisecond)
	t.Logf("old identity dead everywhere %v after the new process started", time.Since(start))
	for _, n := range []*testNode{a, b} { // by the takeover, not by memberlist's probes
		assert.Equal(t, 1, n.logs.count(`"member":"old"`, `"message":"member failed: a new member took its address"`), n.Self())
	}
	waitMembers(t, []string{"a", "b", "new"}, a, b, reborn)

	// Likes go to the new process, none are wasted on the old name.
	like(a, "p", users("u", 10)...)
	waitConverged(t, map[string]int{"p": 10}, a, b, reborn)
}

// memberlist logs a failed probe of a peer as an error; here it is a
// warning (a peer exiting in a rollout is no error of this node), and a
// send after shutdown is debug. Other errors stay errors.
func TestMemberlistLogLevels(t *testing.T) {
	var buf bytes.Buffer
	w := memberlistLog{log: zerolog.New(&buf)}
	for _, line := range []string{
		"[ERR] memberlist: Failed fallback TCP ping: timeout 1s: read tcp 10.0.0.1:1->10.0.0.2:2: i/o timeout",
		"[ERR] memberlist: Failed to send gossip to 10.0.0.2:7946: write udp: use of closed network connection",
		"[ERR] memberlist: something else went wrong",
	} {
		_, err := w.Write([]byte(line))
		require.NoError(t, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], `"level":"warn"`)
	assert.Contains(t, lines[1], `"level":"debug"`)
	assert.Contains(t, lines[2], `"level":"error"`)
}
