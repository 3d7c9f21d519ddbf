package antientropy

import (
	"container/heap"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

// defaultSchedules is how many schedules a plain go test runs.
var defaultSchedules = 300

var (
	simSchedules = flag.Int("sim.schedules", 0, "random schedules TestSimulation runs (0: 300, 40 under -race)")
	simSeed      = flag.Uint64("sim.seed", 0, "run only this schedule seed (0: all)")
)

// regressionSeeds are schedules that once failed; they run every time.
var regressionSeeds = []uint64{}

// simNode is one replica in the simulation.
type simNode struct {
	name    string
	st      *store.Store
	sy      *Syncer
	alive   bool
	paused  bool // a paused node neither ticks nor reads; its mail waits
	leaving bool
	born    time.Duration
}

type envelope struct {
	at   time.Duration
	seq  int
	to   string
	data []byte
}

type mailbox []envelope

func (m mailbox) Len() int { return len(m) }
func (m mailbox) Less(i, j int) bool {
	if m[i].at != m[j].at {
		return m[i].at < m[j].at
	}
	return m[i].seq < m[j].seq
}
func (m mailbox) Swap(i, j int) { m[i], m[j] = m[j], m[i] }
func (m *mailbox) Push(x any)   { *m = append(*m, x.(envelope)) }
func (m *mailbox) Pop() any {
	old := *m
	e := old[len(old)-1]
	*m = old[:len(old)-1]
	return e
}

// sim is a cluster of syncers on a simulated network and clock.
type sim struct {
	t        *testing.T
	rng      *rand.Rand
	now      time.Duration
	epoch    time.Time
	nodes    map[string]*simNode
	order    []string // every name ever used, for determinism
	mail     mailbox
	seq      int
	cut      map[[2]string]bool // from→to messages are lost
	dropRate float64
	dupRate  float64
	maxDelay time.Duration
	nextName int
	acked    map[store.Like]string // like → node that accepted it
	handed   map[store.Like]bool   // held by a node when it finished handing off
	crashed  map[string]bool
	key      gset.Key // the cluster's digest key: a node that starts derives it
	stats    struct{ msgs, bytes, dropped, sessions, keyMismatches int }
}

func newSim(t *testing.T, seed uint64) *sim {
	return &sim{
		t: t, rng: rand.New(rand.NewPCG(seed, 0x5eed)),
		epoch: time.Unix(1_700_000_000, 0),
		nodes: map[string]*simNode{}, cut: map[[2]string]bool{},
		acked: map[store.Like]string{}, handed: map[store.Like]bool{}, crashed: map[string]bool{},
		maxDelay: 5 * time.Millisecond,
		key:      gset.PublicKey(),
	}
}

func (s *sim) clock() time.Time { return s.epoch.Add(s.now) }

func (s *sim) cfg(name string, hasSeeds bool) Config {
	c := DefaultConfig()
	c.Name = name
	c.HasSeeds = hasSeeds
	c.SyncInterval = 100 * time.Millisecond
	c.SessionTimeout = time.Second
	c.FoundAfter = 500 * time.Millisecond
	c.ChunkBytes = 4 << 10 // small chunks: many pages
	c.MaxMessageBytes = 64 << 10
	c.SmallRange = 1 + s.rng.IntN(64)
	return c
}

// add starts a node; the first one has no one to join.
func (s *sim) add() *simNode {
	s.nextName++
	name := fmt.Sprintf("n%02d", s.nextName)
	st, err := store.New(store.Config{Shards: 4})
	require.NoError(s.t, err)
	st.Rekey(s.key)
	sy, err := New(s.cfg(name, len(s.order) > 0), st)
	require.NoError(s.t, err)
	n := &simNode{name: name, st: st, sy: sy, alive: true, born: s.now}
	s.nodes[name] = n
	s.order = append(s.order, name)
	s.membership()
	return n
}

func (s *sim) live() []*simNode {
	var out []*simNode
	for _, name := range s.order {
		if n := s.nodes[name]; n != nil && n.alive {
			out = append(out, n)
		}
	}
	return out
}

// membership gives every live node the current live members, as a
// membership layer would (eventually).
func (s *sim) membership() {
	var names []string
	for _, n := range s.live() {
		names = append(names, n.name)
	}
	for _, n := range s.live() {
		s.perform(n, n.sy.SetPeers(s.clock(), names))
	}
}

func (s *sim) perform(from *simNode, actions []Action) {
	for _, a := range actions {
		switch a := a.(type) {
		case Send:
			s.deliver(from, a.To, a.Msg)
		case SessionEnded:
			s.stats.sessions++
		case KeyMismatch:
			s.stats.keyMismatches++
		}
	}
}

func (s *sim) deliver(from *simNode, to string, m *Message) {
	if m.Kind == KindExpand || (m.Kind == KindExpandResp && len(m.Results) > 0) {
		require.Equal(s.t, from.st.DigestKeyID(), m.KeyID, "%s sent summaries not under its own key", from.name)
	}
	data := m.Append(nil)
	require.LessOrEqual(s.t, len(data), from.sy.cfg.MaxMessageBytes, "%s built a %s of %d bytes", from.name, m.Kind, len(data))
	s.stats.msgs++
	s.stats.bytes += len(data)
	dst := s.nodes[to]
	if dst == nil || !dst.alive || s.cut[[2]string{from.name, to}] || s.rng.Float64() < s.dropRate {
		s.stats.dropped++
		if s.rng.IntN(2) == 0 { // a refused connection is noticed; a lost one is not
			s.perform(from, from.sy.Unreachable(s.clock(), to))
		}
		return
	}
	copies := 1
	if s.rng.Float64() < s.dupRate {
		copies = 2
	}
	for range copies {
		s.seq++
		heap.Push(&s.mail, envelope{at: s.now + time.Duration(s.rng.Int64N(int64(s.maxDelay)+1)), seq: s.seq, to: to, data: data})
	}
}

// like is a client's like accepted by n (its HTTP path: the store).
func (s *sim) like(n *simNode, post, user string) {
	n.st.Like(post, user)
	l := store.Like{Post: post, User: user}
	if _, ok := s.acked[l]; !ok {
		s.acked[l] = n.name
	}
	// The fast path reaches some peers, not all.
	for _, p := range s.live() {
		if p != n && !s.cut[[2]string{n.name, p.name}] && s.rng.Float64() < 0.5 {
			p.st.Merge([]store.Like{l})
		}
	}
}

// run advances the clock by d, delivering mail and ticking every node every
// 10ms.
func (s *sim) run(d time.Duration) {
	end := s.now + d
	for s.now < end {
		next := s.now + 10*time.Millisecond
		for len(s.mail) > 0 && s.mail[0].at <= next {
			e := heap.Pop(&s.mail).(envelope)
			s.now = max(s.now, e.at)
			dst := s.nodes[e.to]
			if dst == nil || !dst.alive {
				continue
			}
			if dst.paused {
				e.at = s.now + 10*time.Millisecond
				heap.Push(&s.mail, e)
				continue
			}
			m, err := Decode(e.data)
			require.NoError(s.t, err)
			s.perform(dst, dst.sy.Step(s.clock(), m))
		}
		s.now = next
		for _, n := range s.live() {
			if !n.paused {
				s.perform(n, n.sy.Tick(s.clock()))
			}
		}
	}
}

func (s *sim) crash(n *simNode) {
	n.alive = false
	s.crashed[n.name] = true
	s.membership()
}

// leave hands off, waiting at most bound, then stops the node.
func (s *sim) leave(n *simNode, bound time.Duration) bool {
	n.leaving = true
	s.perform(n, n.sy.Leave(s.clock()))
	deadline := s.now + bound
	for s.now < deadline && !n.sy.HandedOff() {
		s.run(10 * time.Millisecond)
	}
	ok := n.sy.HandedOff()
	if ok { // the hand-off's promise: a synced survivor holds all of this
		for l := range content(n) {
			s.handed[l] = true
		}
	}
	n.alive = false
	s.membership()
	return ok
}

// content is every like n holds.
func content(n *simNode) map[store.Like]bool {
	out := map[store.Like]bool{}
	n.st.Snapshot(func(post string, users gset.Set) bool {
		for _, u := range users.Members() {
			out[store.Like{Post: post, User: u}] = true
		}
		return true
	})
	return out
}

// faults the schedules draw from.
const (
	faultPartition = iota
	faultOneWay
	faultLoss
	faultCrash
	faultPause
	faultLeave
	faultReorder
	faultRolling
	faultRotate
	faultKinds
)

var faultNames = [...]string{"partition", "one-way", "loss", "crash+restart", "pause", "leave+join", "reorder+dup", "rolling restart", "key rotation"}

type simResult struct {
	nodes  int
	faults [faultKinds]int
	simDur time.Duration
	msgs   int
	bytes  int
}

// schedule runs one seeded schedule and checks the invariants.
func schedule(t *testing.T, seed uint64) simResult {
	s := newSim(t, seed)
	var res simResult
	first := s.add()
	s.run(50 * time.Millisecond)
	require.True(t, first.sy.Synced(), "seed %d: a node with no one to join is synced", seed)
	for range 2 + s.rng.IntN(4) {
		s.add()
	}
	users := 0
	burst := func(n int) {
		for range n {
			var ok []*simNode
			for _, x := range s.live() {
				if !x.paused && !x.leaving {
					ok = append(ok, x)
				}
			}
			if len(ok) == 0 {
				return
			}
			users++
			post := fmt.Sprintf("p%d", s.rng.IntN(20))
			if s.rng.IntN(10) == 0 {
				post = "hot" // a post large enough to descend into
			}
			s.like(ok[s.rng.IntN(len(ok))], post, fmt.Sprintf("u%d", users))
			s.run(time.Duration(s.rng.IntN(5)) * time.Millisecond)
		}
	}
	pick := func() *simNode {
		l := s.live()
		return l[s.rng.IntN(len(l))]
	}
	burst(100 + s.rng.IntN(300))
	for range 3 + s.rng.IntN(6) {
		kind := s.rng.IntN(faultKinds)
		res.faults[kind]++
		hold := time.Duration(200+s.rng.IntN(3000)) * time.Millisecond
		switch kind {
		case faultPartition, faultOneWay:
			l := s.live()
			s.rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
			k := 1 + s.rng.IntN(len(l)-1+1) - 1
			k = max(1, min(k, len(l)-1))
			for _, a := range l[:k] {
				for _, b := range l[k:] {
					s.cut[[2]string{b.name, a.name}] = true
					if kind == faultPartition {
						s.cut[[2]string{a.name, b.name}] = true
					}
				}
			}
			burst(50 + s.rng.IntN(200))
			s.run(hold)
			clear(s.cut)
		case faultLoss:
			s.dropRate = 0.2 + 0.2*s.rng.Float64()
			burst(100)
			s.run(hold)
			s.dropRate = 0
		case faultCrash:
			if len(s.live()) > 1 {
				s.crash(pick())
			}
			burst(50)
			s.add()
		case faultPause:
			n := pick()
			n.paused = true
			burst(100)
			s.run(hold * 3)
			n.paused = false
		case faultLeave:
			if len(s.live()) > 1 {
				// The leaver holds likes no one else has: it took them while
				// cut off, and leaves as soon as the cut heals.
				n := pick()
				for _, p := range s.live() {
					s.cut[[2]string{n.name, p.name}] = true
				}
				for i := range 30 {
					s.like(n, "solo", fmt.Sprintf("%s-%d", n.name, i))
				}
				clear(s.cut)
				require.True(t, s.leave(n, 10*time.Second), "seed %d: %s could not hand off", seed, n.name)
			}
			s.add()
			burst(50)
		case faultReorder:
			s.dupRate, s.maxDelay = 0.2, 80*time.Millisecond
			burst(100)
			s.run(hold)
			s.dupRate, s.maxDelay = 0, 5*time.Millisecond
		case faultRolling:
			l := s.live()
			s.rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
			for _, n := range l {
				nn := s.add() // surge first, as a rollout with maxSurge 1
				for range 400 {
					if nn.sy.Synced() {
						break
					}
					s.run(10 * time.Millisecond)
				}
				require.True(t, nn.sy.Synced(), "seed %d: %s never synced", seed, nn.name)
				burst(20)
				require.True(t, s.leave(n, 10*time.Second), "seed %d: %s could not hand off", seed, n.name)
			}
		case faultRotate:
			// The primary key changes one node at a time, likes arriving
			// meanwhile: nodes on different keys refuse to compare, and
			// converge once all are on the new one.
			s.key = gset.DeriveKey(fmt.Appendf(nil, "key %d", s.rng.Uint64()))
			l := s.live()
			s.rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
			for _, n := range l {
				n.st.Rekey(s.key)
				burst(20)
				s.run(hold / time.Duration(len(l)))
			}
		}
		burst(s.rng.IntN(100))
	}

	// Heal everything, then let anti-entropy finish.
	clear(s.cut)
	s.dropRate, s.dupRate = 0, 0
	for _, n := range s.live() {
		n.paused = false
	}
	s.run(15 * time.Second)

	live := s.live()
	want := content(live[0])
	for _, n := range live {
		require.True(t, n.sy.Synced(), "seed %d: %s not synced after healing", seed, n.name)
		got := content(n)
		if len(got) != len(want) || !mapsEqual(got, want) {
			t.Fatalf("seed %d: %s holds %d likes, %s holds %d: replicas differ after healing", seed, n.name, len(got), live[0].name, len(want))
		}
	}
	for l := range want {
		if _, ok := s.acked[l]; !ok {
			t.Fatalf("seed %d: phantom like %v", seed, l)
		}
	}
	var lost []string
	for l := range s.handed {
		if !want[l] {
			lost = append(lost, fmt.Sprint(l))
		}
	}
	for l, by := range s.acked {
		if n := s.nodes[by]; n.alive && !want[l] {
			lost = append(lost, fmt.Sprintf("%v (acked by %s, alive)", l, by))
		}
	}
	slices.Sort(lost)
	require.Empty(t, lost, "seed %d: lost likes:\n%s", seed, strings.Join(lost, "\n"))

	res.nodes, res.simDur, res.msgs, res.bytes = len(s.order), s.now, s.stats.msgs, s.stats.bytes
	return res
}

func mapsEqual(a, b map[store.Like]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestSimulation runs seeded random schedules of every fault kind against
// syncers on a simulated network and clock: after healing, every replica is
// identical, synced, holds every like acked by a surviving node or handed
// off by a leaving one, and nothing else. -sim.schedules=N runs more;
// -sim.seed=S replays one.
func TestSimulation(t *testing.T) {
	seeds := slices.Clone(regressionSeeds)
	if *simSeed != 0 {
		seeds = []uint64{*simSeed}
	} else {
		n := *simSchedules
		if n == 0 {
			n = defaultSchedules
		}
		if testing.Short() {
			n = min(n, 50)
		}
		for i := range n {
			seeds = append(seeds, uint64(i)+1)
		}
	}
	var total simResult
	for _, seed := range seeds {
		r := schedule(t, seed)
		total.nodes += r.nodes
		total.simDur += r.simDur
		total.msgs += r.msgs
		total.bytes += r.bytes
		for k := range r.faults {
			total.faults[k] += r.faults[k]
		}
	}
	var kinds []string
	for k, n := range total.faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", faultNames[k], n))
	}
	t.Logf("simulation: %d schedules, %d nodes, %s simulated, %d messages (%d KiB); faults: %s",
		len(seeds), total.nodes, total.simDur.Round(time.Second), total.msgs, total.bytes>>10, strings.Join(kinds, " "))
}
