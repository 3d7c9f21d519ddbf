package cluster

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
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

	leaving, _ := tab.updated(tp("b", 3, 3), true, t0)
	assert.True(t, leaving, "b announces its leave")
	g, changed, _ := tab.gone("b", t0)
	assert.True(t, changed)
	assert.Equal(t, stateLeft, g.state)
	g, changed, _ = tab.gone("a", t0)
	assert.True(t, changed)
	assert.Equal(t, stateDead, g.state, "a suspect that goes without a word failed")
	_, changed, _ = tab.gone("a", t0)
	assert.False(t, changed, "gone once")
	assert.False(t, tab.suspected("a", t0), "a dead member is not suspected")
	assert.False(t, tab.answered("a", t0), "nor revived by a probe")

	// c restarts at its address as c2: c is dead at once, never a target.
	ch := tab.joined(tp("c2", 4, 5), false, t0)
	assert.Equal(t, []takeover{{peer: tp("c", 4, 4), by: "c2"}}, ch.taken)

	want := []Member{
		{Name: "a", Addr: "10.0.0.1:2", State: "dead"},
		{Name: "b", Addr: "10.0.0.1:3", State: "left"},
		{Name: "c", Addr: "10.0.0.1:4", State: "dead"},
		{Name: "c2", Addr: "10.0.0.1:4", State: "alive"},
		{Name: "self", Addr: "10.0.0.1:1", State: "alive"},
	}
	assert.Equal(t, want, tab.list(t0))
	assert.ElementsMatch(t, []string{"a", "c2"}, peerNames(tab.sendTargets(t0, time.Second)),
		"a failed a moment ago and may come back; b left; c's address is taken")
	assert.ElementsMatch(t, []string{"c2"}, peerNames(tab.sendTargets(t0.Add(time.Second), time.Second)))
	assert.ElementsMatch(t, []string{"c2"}, peerNames(tab.peers(stateAlive, stateSuspect)), "the peers anti-entropy syncs with: never itself")
	_, ok := tab.member("a")
	assert.False(t, ok)

	ch = tab.joined(tp("past-self", 1, 9), false, t0)
	by, ok := ch.superseded("past-self")
	assert.True(t, ok && by == "self", "news of a member at this node's address is stale")
	assert.Equal(t, Member{Name: "past-self", Addr: "10.0.0.1:1", State: "dead"}, tab.list(t0)[4])

	t1 := t0.Add(2 * time.Minute)
	assert.Len(t, tab.list(t1), 4, "c and past-self stay listed while memberlist holds them alive")
	leaving, _ = tab.updated(tp("self", 1, 1), true, t1)
	assert.True(t, leaving)
	_, _, ch = tab.gone("self", t1)
	assert.Empty(t, ch.restored, "this node holds its address after it left: past-self stays dead")
	tab.gone("c", t0)
	tab.gone("past-self", t0)
	assert.Equal(t, []Member{{Name: "c2", Addr: "10.0.0.1:4", State: "alive"}, {Name: "self", Addr: "10.0.0.1:1", State: "left"}},
		tab.list(t1), "gone members are forgotten after forgetAfter (this node left a moment ago)")
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
		// Each line is written just after the state it reports changes.
		require.Eventually(t, func() bool {
			return n.logs.countSince(mark, `"member":"c"`, `"message":"member failed"`) > 0 &&
				n.logs.countSince(mark, `"member":"d"`, `"message":"member left"`) > 0
		}, waitLong, 10*time.Millisecond, "%s logs c failed and d left", n.Self())
		assert.Zero(t, n.logs.countSince(mark, `"member":"c"`, `"message":"member left"`), "%s: c did not leave", n.Self())
		assert.Equal(t, 1, n.logs.countSince(mark, `"member":"d"`, `"message":"member left"`), "%s: d left once", n.Self())
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
		line := []string{`"member":"old"`, `"message":"member failed: a new member took its address"`}
		require.Eventually(t, func() bool { return n.logs.count(line...) > 0 }, waitLong, 10*time.Millisecond,
			"%s logs the takeover (just after it shows old dead)", n.Self())
		assert.Equal(t, 1, n.logs.count(line...), n.Self())
	}
	waitMembers(t, []string{"a", "b", "new"}, a, b, reborn)

	// Likes go to the new process, none are wasted on the old name.
	like(a, "p", users("u", 10)...)
	waitConverged(t, map[string]int{"p": 10}, a, b, reborn)
}

// Finding 7 (#21), end to end: nodes that join while a killed process and
// its successor at the same address are both alive in the cluster's state
// (the failure detector is slow here) hear of the two in memberlist's
// order, which is random. Each keeps the live one: the node meta says which
// started last.
func TestJoinersKeepTheLiveProcessOfARestartedAddress(t *testing.T) {
	slowDetector := func(c *Config) { c.SuspicionMult = 30 }
	a := startNode(t, "a", nil, slowDetector)
	old := startNode(t, "old", []string{a.Addr()}, slowDetector)
	waitMembers(t, []string{"a", "old"}, a, old)
	addr := old.Addr()
	crash(t, old)
	reborn := startNodeAt(t, addr, "new", []string{a.Addr()}, slowDetector)
	require.Eventually(t, func() bool { return stateOf(a, "new") == "alive" }, waitLong, 10*time.Millisecond)

	var joiners []*testNode
	for i := range 4 {
		joiners = append(joiners, startNode(t, fmt.Sprint("j", i), []string{a.Addr()}, slowDetector))
	}
	heard := 0
	for _, j := range joiners {
		// (old, declared dead before j joined, is not listed at all)
		require.Eventually(t, func() bool {
			s := stateOf(j, "old")
			return stateOf(j, "new") == "alive" && (s == "dead" || s == "")
		}, waitLong, 10*time.Millisecond, "%s keeps new, the live process at %s", j.Self(), addr)
		if stateOf(j, "old") != "" {
			heard++
		}
	}
	t.Logf("%d of %d joiners heard of old", heard, len(joiners))
	like(joiners[0], "p", users("u", 10)...)
	waitConverged(t, map[string]int{"p": 10}, append(joiners, a, reborn)...)
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

func peerNames(ps []peer) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.name)
	}
	return out
}

// Finding 7 (#21): a node that joins while a killed process and its
// replacement at one address are both still alive in memberlist hears of
// them in any order. The live n4.2 must not stay dead once its killed
// predecessor n4.1, announced after it, is declared gone.
func TestLiveMemberSurvivesItsPredecessorAnnouncedAfterIt(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tab := newMemberTable("n1", time.Minute)
	tab.joined(tp("n1", 1, 1), false, t0)
	tab.joined(tp("n3.2", 3, 32), false, t0)
	tab.joined(tp("n4.2", 4, 42), false, t0) // live
	tab.joined(tp("n4.1", 4, 41), false, t0) // its killed predecessor, same address
	tab.gone("n4.1", t0)
	assert.Equal(t, []string{"n3.2", "n4.2"}, peerNames(tab.peers(stateAlive, stateSuspect)))
}

// When processes say when they started, the later one holds the address
// whatever the order: the predecessor announced after it shows dead on
// arrival, and its going changes nothing.
func TestTheLaterProcessHoldsItsAddressWhateverTheOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tab := newMemberTable("n1", time.Minute)
	tab.joined(tp("n1", 1, 1), false, t0)
	live, old := tp("n4.2", 4, 42), tp("n4.1", 4, 41)
	live.started, old.started = 2, 1
	assert.Empty(t, tab.joined(live, false, t0).taken)
	ch := tab.joined(old, false, t0)
	by, ok := ch.superseded("n4.1")
	assert.True(t, ok, "the predecessor shows dead on arrival")
	assert.Equal(t, "n4.2", by)
	assert.Equal(t, []string{"n4.2"}, peerNames(tab.peers(stateAlive, stateSuspect)))
	_, changed, ch := tab.gone("n4.1", t0)
	assert.False(t, changed, "it showed dead already")
	assert.Empty(t, ch.restored)
	assert.Equal(t, []string{"n4.2"}, peerNames(tab.peers(stateAlive, stateSuspect)))

	// Unstamped, the last joined holds it, and gives it back when it goes.
	tab.joined(tp("n5.2", 5, 52), false, t0)
	ch = tab.joined(tp("n5.1", 5, 51), false, t0)
	assert.Equal(t, []takeover{{peer: tp("n5.2", 5, 52), by: "n5.1"}}, ch.taken)
	_, _, ch = tab.gone("n5.1", t0)
	assert.Equal(t, []peer{tp("n5.2", 5, 52)}, ch.restored)
	assert.Equal(t, []string{"n4.2", "n5.2"}, peerNames(tab.peers(stateAlive, stateSuspect)))
}

// reconcile sets the table as memberlist's member list says, unless an
// event came in since the list was read.
func TestMemberTableReconcilesWithMemberlist(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tab := newMemberTable("self", time.Minute)
	tab.joined(tp("self", 1, 1), false, t0)
	tab.joined(tp("a", 2, 2), false, t0)
	tab.joined(tp("b", 3, 3), false, t0)
	tab.gone("a", t0)

	epoch := tab.epoch()
	missed, _, ok := tab.reconcile([]string{"self", "a", "b"}, epoch-1, t0)
	assert.False(t, ok, "an event came in after the list was read")
	assert.Empty(t, missed)
	assert.Equal(t, []string{"b"}, peerNames(tab.peers(stateAlive, stateSuspect)))

	missed, _, ok = tab.reconcile([]string{"self", "a", "ghost"}, epoch, t0)
	assert.True(t, ok)
	assert.Equal(t, []string{"a", "b", "ghost"}, missed)
	assert.Equal(t, []string{"a"}, peerNames(tab.peers(stateAlive, stateSuspect)),
		"a is alive again, b gone; ghost, never announced, has no address")
	missed, _, ok = tab.reconcile([]string{"self", "a"}, tab.epoch(), t0)
	assert.True(t, ok)
	assert.Empty(t, missed, "the table agrees")
}

// The node meta carries the process's start time; older metas do not.
func TestMetaCarriesStartTime(t *testing.T) {
	m := &memberlist.Node{Name: "a", Addr: net.IPv4(10, 0, 0, 1), Port: 7, Meta: encodeMeta(9, 1234, true, true, true, true)}
	p, leaving := peerOf(m)
	assert.True(t, leaving)
	assert.Equal(t, peer{name: "a", ip: m.Addr, port: 7, origin: 9, hasOrigin: true, streams: true, sessions: true, sessionsOnly: true, started: 1234}, p)
	m.Meta = encodeMeta(9, 0, false, false, false, false)
	assert.Len(t, m.Meta, 8, "an unstamped meta is the 8 bytes older nodes send")
	p, _ = peerOf(m)
	assert.Zero(t, p.started)
	m.Meta = encodeMeta(9, 1234, false, false, false, false)
	require.Len(t, m.Meta, 17)
	assert.Zero(t, m.Meta[8], "older nodes read the flags byte: no flags")
}

// simProc is one process in a simulated history: a name, an address (its
// port), when it started (0: an older version that does not say) and
// whether it still runs at the end.
type simProc struct {
	name    string
	port    uint16
	started int64
	live    bool
}

func (p simProc) peer(streams bool) peer {
	q := tp(p.name, p.port, uint64(p.started)+1)
	q.started, q.streams = p.started, streams
	return q
}

type simEvent struct {
	kind    string // join, update, leaving, gone, suspect, answer
	proc    simProc
	streams bool
}

// simHistory makes a seeded history as memberlist announces it to one
// node, "self" (port 1): a few addresses, each held by one to three
// processes in turn, a past process at self's address, some processes that
// leave, crash or flap (declared dead while alive, then refuting). Each
// process's events are in memberlist's order (join, updates, gone; a live
// one may be gone and join again); across processes the order is random.
// Every process that ended is declared gone by the end.
func simHistory(rng *rand.Rand) []simEvent {
	var clock int64
	start := func(stamped bool) int64 {
		clock++
		if !stamped {
			return 0
		}
		return clock
	}
	self := simProc{name: "self", port: 1, started: 1000, live: true}
	var seqs [][]simEvent
	add := func(p simProc, leaves bool) {
		var s []simEvent
		s = append(s, simEvent{kind: "join", proc: p})
		for range rng.IntN(3) {
			switch rng.IntN(4) {
			case 0:
				s = append(s, simEvent{kind: "update", proc: p, streams: rng.IntN(2) == 0})
			case 1:
				s = append(s, simEvent{kind: "suspect", proc: p})
			case 2:
				s = append(s, simEvent{kind: "answer", proc: p})
			case 3:
				if p.live { // falsely declared dead; refutes
					s = append(s, simEvent{kind: "gone", proc: p}, simEvent{kind: "join", proc: p})
				}
			}
		}
		if !p.live {
			if leaves {
				s = append(s, simEvent{kind: "leaving", proc: p})
			}
			s = append(s, simEvent{kind: "gone", proc: p})
		}
		seqs = append(seqs, s)
	}
	if rng.IntN(2) == 0 {
		add(simProc{name: "self.0", port: 1, started: start(true)}, false)
	}
	for port := uint16(2); port < 6; port++ {
		stamped := rng.IntN(5) > 0
		k := 1 + rng.IntN(3)
		for i := range k {
			p := simProc{name: fmt.Sprintf("n%d.%d", port, i+1), port: port, started: start(stamped)}
			p.live = i == k-1 && rng.IntN(5) > 0
			add(p, rng.IntN(3) == 0)
		}
	}
	// self's join comes first (memberlist.Create); the rest interleave.
	out := []simEvent{{kind: "join", proc: self}}
	for len(seqs) > 0 {
		i := rng.IntN(len(seqs))
		out = append(out, seqs[i][0])
		if seqs[i] = seqs[i][1:]; len(seqs[i]) == 0 {
			seqs = slices.Delete(seqs, i, i+1)
		}
	}
	return out
}

// Finding 7 (#21): whatever the order memberlist announces joins, leaves,
// updates and address takeovers in, the table ends listing as peers
// exactly the processes still running, and on the way never lists one
// memberlist holds dead, nor hides one memberlist holds alive that is the
// newest process at its address (when processes say when they started).
func TestMemberTableAgreesWithMemberlistWhateverTheOrder(t *testing.T) {
	for seed := uint64(1); seed <= 3000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		history := simHistory(rng)
		now := time.Unix(1000, 0)
		tab := newMemberTable("self", time.Minute)
		join := func(p peer, leaving bool) { tab.joined(p, leaving, now) }
		update := func(p peer, leaving bool) { tab.updated(p, leaving, now) }
		gone := func(name string) { tab.gone(name, now) }

		alive := map[string]simProc{} // the reference: memberlist's alive set
		for step, ev := range history {
			now = now.Add(time.Millisecond)
			switch ev.kind {
			case "join":
				join(ev.proc.peer(false), false)
				alive[ev.proc.name] = ev.proc
			case "update":
				update(ev.proc.peer(ev.streams), false)
			case "leaving":
				update(ev.proc.peer(false), true)
			case "gone":
				gone(ev.proc.name)
				delete(alive, ev.proc.name)
			case "suspect":
				tab.suspected(ev.proc.name, now)
			case "answer":
				tab.answered(ev.proc.name, now)
			}
			got := peerNames(tab.peers(stateAlive, stateSuspect))
			for _, name := range got {
				if _, ok := alive[name]; !ok {
					t.Fatalf("seed %d, step %d (%s %s): %s is a peer, memberlist holds it gone; peers %v\n%s",
						seed, step, ev.kind, ev.proc.name, name, got, formatHistory(history[:step+1]))
				}
			}
			for _, p := range alive {
				newest := p.name != "self" && p.port != 1 && p.started != 0
				for _, q := range alive {
					if q.port == p.port && q.started > p.started {
						newest = false
					}
				}
				if newest && !slices.Contains(got, p.name) {
					t.Fatalf("seed %d, step %d (%s %s): %s, alive in memberlist and the newest process at its address, is no peer; peers %v\n%s",
						seed, step, ev.kind, ev.proc.name, p.name, got, formatHistory(history[:step+1]))
				}
			}
		}
		want := []string{}
		for _, p := range alive {
			if p.name != "self" {
				want = append(want, p.name)
			}
		}
		slices.Sort(want)
		if got := peerNames(tab.peers(stateAlive, stateSuspect)); !slices.Equal(got, want) {
			t.Fatalf("seed %d: at the end the peers are %v, memberlist's alive set is %v\n%s", seed, got, want, formatHistory(history))
		}
	}
}

func formatHistory(h []simEvent) string {
	var b strings.Builder
	for _, ev := range h {
		fmt.Fprintf(&b, "  %s %s (port %d, started %d)\n", ev.kind, ev.proc.name, ev.proc.port, ev.proc.started)
	}
	return b.String()
}

// A node says whether it sends only on sessions (direct mode) or also
// through memberlist (gossip mode); a meta of the version before, which
// did not say, is read as that version meant: sessions only.
func TestMetaSaysWhetherFramesTravelOnlyOnSessions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		flags    byte
		want     bool
		sessions bool
	}{
		{"direct mode", metaStreams | metaSessions | metaSaysMode | metaSessionsOnly, true, true},
		{"gossip mode", metaStreams | metaSessions | metaSaysMode, false, true},
		{"version before, sessions", metaStreams | metaSessions, true, true},
		{"version 1", metaStreams, false, false},
		{"only-flag without sessions", metaStreams | metaSaysMode | metaSessionsOnly, false, false},
	} {
		m := &memberlist.Node{Name: "a", Addr: net.IPv4(10, 0, 0, 1), Port: 7, Meta: append(encodeMeta(9, 0, false, false, false, false), tc.flags)}
		got, _ := peerOf(m)
		assert.Equal(t, tc.sessions, got.sessions, tc.name)
		assert.Equal(t, tc.want, got.sessionsOnly, tc.name)
	}
	direct, _ := peerOf(&memberlist.Node{Meta: encodeMeta(9, 1, false, true, true, true)})
	gossip, _ := peerOf(&memberlist.Node{Meta: encodeMeta(9, 1, false, true, true, false)})
	assert.True(t, direct.sessionsOnly)
	assert.False(t, gossip.sessionsOnly)
	assert.True(t, gossip.sessions)
}
