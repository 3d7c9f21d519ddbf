package acks

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/breaker"
	"github.com/likesd/likesd/internal/link"
)

var t0 = time.Unix(1_700_000_000, 0)

func newTracker(members ...string) *Tracker {
	tr := New(DefaultConfig())
	tr.SetMembers(members)
	return tr
}

// elig lists tr's members, sorted: every member eligible (no breaker open).
func elig(tr *Tracker) []string {
	var out []string
	for m := range tr.members {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func released(t *testing.T, tr *Tracker) map[uint64]Result {
	t.Helper()
	rs := tr.Take()
	out := map[uint64]Result{}
	for _, r := range rs {
		_, dup := out[r.ID]
		require.False(t, dup, "waiter %d released twice", r.ID)
		out[r.ID] = r.Result
	}
	return out
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]Level{"1": One, "2": Count(2), "64": Count(64), "quorum": Quorum, "all": All} {
		got, err := ParseLevel(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
		assert.Equal(t, in, got.String())
	}
	for _, in := range []string{"", "0", "65", "-1", "two", "QUORUM", "1.5", " 2"} {
		_, err := ParseLevel(in)
		assert.ErrorIs(t, err, ErrLevel, in)
	}
}

func TestWantInSmallAndShrinkingClusters(t *testing.T) {
	for _, tt := range []struct {
		l         Level
		size      int
		clustered bool
		want      int
	}{
		{One, 3, true, 1}, {Count(2), 1, true, 2}, {Count(3), 2, true, 3},
		{Quorum, 1, false, 1}, {Quorum, 1, true, 2}, {Quorum, 2, true, 2}, {Quorum, 3, true, 2},
		{Quorum, 4, true, 3}, {Quorum, 5, true, 3},
		{All, 1, false, 1}, {All, 1, true, 2}, {All, 2, true, 2}, {All, 5, true, 5},
	} {
		assert.Equal(t, tt.want, tt.l.Want(tt.size, tt.clustered), "%s of %d (clustered %v)", tt.l, tt.size, tt.clustered)
	}
}

func TestConfigValidateNamesFlags(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	with := func(f func(*Config)) Config { c := DefaultConfig(); f(&c); return c }
	for _, tt := range []struct {
		name    string
		cfg     Config
		wantErr string // "" for valid; else the flag and bound named
	}{
		{"timeout at lower bound", with(func(c *Config) { c.Timeout = MinTimeout }), ""},
		{"timeout at upper bound", with(func(c *Config) { c.Timeout = MaxTimeout }), ""},
		{"timeout zero", with(func(c *Config) { c.Timeout = 0 }), "--write-timeout must be from 1ms to 5s, got 0s"},
		{"timeout below", with(func(c *Config) { c.Timeout = MinTimeout - 1 }), "--write-timeout must be from 1ms to 5s, got 999.999µs"},
		{"timeout above", with(func(c *Config) { c.Timeout = MaxTimeout + 1 }), "--write-timeout must be from 1ms to 5s, got 5.000000001s"},
		{"level at upper bound", with(func(c *Config) { c.Default = Count(MaxLevel) }), ""},
		{"level not set", with(func(c *Config) { c.Default = Level{} }), "--write-acks is not set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, ErrConfig)
			assert.EqualError(t, err, "acks: invalid config: "+tt.wantErr)
		})
	}
}

func TestLevelOneAndNoPeerAnswerAtOnce(t *testing.T) {
	tr := newTracker("b", "c")
	_, r, done := tr.Register([]uint64{1}, One, true, elig(tr))
	assert.True(t, done)
	assert.Equal(t, Result{Replicas: 1, Want: 1}, r)
	assert.True(t, r.Met())

	alone := newTracker()
	_, r, done = alone.Register([]uint64{1}, Count(2), true, elig(alone))
	assert.True(t, done, "no reachable peer: 202 at once, not after the timeout")
	assert.Equal(t, Result{Replicas: 1, Want: 2}, r)
	assert.False(t, r.Met())
}

func TestDefaultLevelIsOneOnAStandaloneNode(t *testing.T) {
	tr := newTracker()
	_, r, done := tr.Register([]uint64{1}, Level{}, false, elig(tr))
	assert.True(t, done)
	assert.True(t, r.Met())
	_, r, done = tr.Register([]uint64{2}, Level{}, true, elig(tr))
	assert.True(t, done)
	assert.False(t, r.Met(), "a node of a cluster cut off from every peer answers 202")
}

func TestFirstAckReleasesW2(t *testing.T) {
	tr := newTracker("b", "c")
	id, _, done := tr.Register([]uint64{5}, Level{}, true, elig(tr))
	require.False(t, done)
	tr.Acked("c", 5, 5)
	assert.Equal(t, map[uint64]Result{id: {Replicas: 2, Want: 2}}, released(t, tr))
	tr.Acked("b", 5, 5) // late: nothing more
	assert.Empty(t, released(t, tr))
	assert.Zero(t, tr.Waiting())
}

func TestDuplicateAndOutOfOrderAcksOfABulkWrite(t *testing.T) {
	tr := newTracker("b", "c")
	id, _, done := tr.Register([]uint64{10, 11, 12, 13}, All, true, elig(tr))
	require.False(t, done)
	tr.Acked("b", 12, 13)
	tr.Acked("b", 12, 13) // duplicate
	tr.Acked("b", 12, 12) // duplicate inside
	tr.Acked("c", 10, 13)
	assert.Empty(t, released(t, tr), "b still lacks 10 and 11")
	tr.Acked("b", 11, 11)
	tr.Acked("b", 9, 10) // a run wider than the write
	assert.Equal(t, map[uint64]Result{id: {Replicas: 3, Want: 3}}, released(t, tr))
}

func TestAPeerLeavingReleasesWithWhatItHas(t *testing.T) {
	tr := newTracker("b", "c")
	id, _, _ := tr.Register([]uint64{1}, All, true, elig(tr))
	tr.Acked("b", 1, 1)
	assert.Empty(t, released(t, tr))
	tr.SetMembers([]string{"b"})
	assert.Equal(t, map[uint64]Result{id: {Replicas: 2, Want: 3}}, released(t, tr))
}

func TestCancelReturnsHowFarItGot(t *testing.T) {
	tr := newTracker("b", "c")
	id, _, _ := tr.Register([]uint64{1}, All, true, elig(tr))
	tr.Acked("b", 1, 1)
	r, ok := tr.Cancel(id)
	require.True(t, ok)
	assert.Equal(t, Result{Replicas: 2, Want: 3}, r)
	_, ok = tr.Cancel(id)
	assert.False(t, ok)
	tr.Acked("c", 1, 1)
	assert.Empty(t, released(t, tr))
}

// A peer whose breaker opened is waited for no more: its waiters are
// released with what they have.
func TestAGonePeerReleasesItsWaiters(t *testing.T) {
	tr := newTracker("b", "c")
	id, _, _ := tr.Register([]uint64{1}, All, true, []string{"b", "c"})
	tr.Acked("c", 1, 1)
	assert.Empty(t, released(t, tr))
	tr.Gone("b")
	assert.Equal(t, map[uint64]Result{id: {Replicas: 2, Want: 3}}, released(t, tr))
	tr.Acked("b", 1, 1) // too late: it was given up
	assert.Empty(t, released(t, tr))
}

// TestSimulatedSchedules drives trackers with random events and checks,
// against a naive reference, every waiter's outcome: a waiter is released
// once, exactly when it has its replicas or nobody left to hope for, with
// Replicas = 1 + the peers that acknowledged all its seqs while eligible.
func TestSimulatedSchedules(t *testing.T) {
	schedules := 2000
	if testing.Short() {
		schedules = 200
	}
	for seed := range schedules {
		simulate(t, uint64(seed))
	}
}

type refWaiter struct {
	seqs     []uint64
	want     int
	eligible map[string]bool
	acked    map[string]map[uint64]bool
	gone     map[string]bool
	result   *Result
}

func (w *refWaiter) full() int {
	n := 0
	for p := range w.eligible {
		if len(w.acked[p]) == len(w.seqs) {
			n++
		}
	}
	return n
}

func (w *refWaiter) hopeless() bool {
	for p := range w.eligible {
		if !w.gone[p] && len(w.acked[p]) < len(w.seqs) {
			return false
		}
	}
	return true
}

// simulate drives a tracker beside a link machine (internal/link), the
// breakers it waits by, glued as internal/cluster glues them: eligible
// peers from the link, a breaker that opens is Gone.
func simulate(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	cfg := DefaultConfig()
	lcfg := link.DefaultConfig()
	lcfg.Timeout = cfg.Timeout
	lcfg.Breaker.Failures = 1 + rng.IntN(3)
	tr, lk := New(cfg), link.New(lcfg)
	all := []string{"a", "b", "c", "d"}
	members := slices.Clone(all[:1+rng.IntN(4)])
	now := t0
	targets := func(names []string) []link.Target {
		var out []link.Target
		for _, n := range names {
			out = append(out, link.Target{Name: n, Addr: n})
		}
		return out
	}
	tr.SetMembers(members)
	lk.SetMembers(members, targets(members), now)
	type send struct {
		peer     string
		link, id uint64
	}
	var inflight []send
	ref := map[uint64]*refWaiter{}
	var seq uint64
	fail := func(format string, args ...any) {
		t.Helper()
		require.FailNow(t, fmt.Sprintf("seed %d: ", seed)+fmt.Sprintf(format, args...))
	}
	// glue carries out the link's actions as the driver would (sends stay
	// in flight until an op ends them) and gives up on peers whose breaker
	// opened.
	glue := func() {
		acts, trs := lk.Take()
		for _, a := range acts {
			if a.Kind == link.Send {
				inflight = append(inflight, send{a.Peer, a.Link, a.ID})
			}
		}
		for _, x := range trs {
			if x.To == breaker.Open {
				tr.Gone(x.Peer)
				for _, w := range ref {
					if w.result == nil && w.eligible[x.Peer] && len(w.acked[x.Peer]) < len(w.seqs) {
						w.gone[x.Peer] = true
					}
				}
			}
		}
	}
	collect := func() {
		rs := tr.Take()
		for _, r := range rs {
			w, ok := ref[r.ID]
			if !ok || w.result != nil {
				fail("waiter %d released twice or unknown", r.ID)
			}
			if got := 1 + w.full(); r.Result.Replicas != got || r.Result.Want != w.want {
				fail("waiter %d released with %+v, reference %d of %d", r.ID, r.Result, got, w.want)
			}
			if 1+w.full() < w.want && !w.hopeless() {
				fail("waiter %d released early", r.ID)
			}
			w.result = &r.Result
		}
		for id, w := range ref {
			if w.result == nil && (1+w.full() >= w.want || w.hopeless()) {
				fail("waiter %d not released: %d of %d, hopeless %v", id, 1+w.full(), w.want, w.hopeless())
			}
		}
	}
	// refWant is the level arithmetic written out again: default 2, quorum
	// a majority and all everyone of the reachable, never below 2.
	refWant := func(l Level, size int) int {
		switch l {
		case Level{}:
			return 2
		case Quorum:
			return max(size/2+1, 2)
		case All:
			return max(size, 2)
		}
		return l.n
	}
	for range 300 {
		switch op := rng.IntN(12); {
		case op < 3: // a write
			k := 1 + rng.IntN(3)
			seqs := make([]uint64, k)
			for i := range seqs {
				seq++
				seqs[i] = seq
			}
			levels := []Level{One, Count(2), Count(3), Quorum, All, {}}
			l := levels[rng.IntN(len(levels))]
			var eligible []string
			for _, p := range members {
				if lk.State(p, now).Breaker == breaker.Closed {
					eligible = append(eligible, p)
				}
			}
			slices.Sort(eligible)
			if got := lk.Eligible(now); !slices.Equal(got, eligible) {
				fail("eligible %v, reference %v", got, eligible)
			}
			id, r, done := tr.Register(seqs, l, true, eligible)
			if want := refWant(l, 1+len(eligible)); r.Want != want {
				fail("%s of %d: want %d, reference %d", l, 1+len(eligible), r.Want, want)
			}
			if done != (len(eligible) == 0 || r.Want <= 1) {
				fail("done %v with %d eligible peers and want %d", done, len(eligible), r.Want)
			}
			if done {
				continue
			}
			w := &refWaiter{seqs: seqs, want: r.Want, eligible: map[string]bool{}, acked: map[string]map[uint64]bool{}, gone: map[string]bool{}}
			for _, p := range eligible {
				w.eligible[p] = true
				w.acked[p] = map[uint64]bool{}
			}
			ref[id] = w
			lk.Queue(link.Frame{First: seqs[0], Last: seqs[k-1], Count: k}, now)
		case op < 7: // an ack of a random run, maybe a duplicate, maybe from a non-member
			if seq == 0 {
				continue
			}
			p := all[rng.IntN(len(all))]
			first := 1 + rng.Uint64N(seq)
			last := min(first+rng.Uint64N(3), seq)
			if lk.State(p, now).Breaker == breaker.Open {
				continue // an open peer gets no frames, so sends no acks
			}
			lk.Acked(p, first, last, now)
			tr.Acked(p, first, last)
			for _, w := range ref {
				if w.result != nil || !w.eligible[p] || w.gone[p] {
					continue
				}
				for _, s := range w.seqs {
					if s >= first && s <= last {
						w.acked[p][s] = true
					}
				}
			}
		case op < 9: // a send ends, or fails
			if len(inflight) == 0 {
				continue
			}
			i := rng.IntN(len(inflight))
			s := inflight[i]
			inflight = slices.Delete(inflight, i, i+1)
			r := link.Sent
			if rng.IntN(3) == 0 {
				r = link.Failed
			}
			lk.SendDone(s.peer, s.link, s.id, r, now)
		case op < 10: // membership changes; some non-members are still sent to
			members = nil
			var retain []string
			for _, p := range all {
				switch rng.IntN(4) {
				case 0:
				case 1:
					retain = append(retain, p)
				default:
					members = append(members, p)
				}
			}
			tr.SetMembers(members)
			lk.SetMembers(members, targets(append(slices.Clone(members), retain...)), now)
			for _, p := range retain {
				if slices.Contains(lk.Eligible(now), p) {
					fail("%s is retained, not a member, yet eligible", p)
				}
			}
			for _, w := range ref {
				for p := range w.eligible {
					if w.result == nil && !slices.Contains(members, p) {
						w.gone[p] = true
					}
				}
			}
		default: // time passes: mostly ticks, sometimes a stall or a cool-down
			d := time.Duration(rng.IntN(int(cfg.Timeout / 4)))
			if rng.IntN(5) == 0 {
				d = time.Duration(rng.IntN(int(lcfg.Breaker.Cooldown)))
			}
			now = now.Add(d)
			lk.Tick(now)
		}
		glue()
		collect()
	}
	// Whatever still waits is cancelled with what it has.
	for id, w := range ref {
		if w.result != nil {
			continue
		}
		r, ok := tr.Cancel(id)
		if !ok || r.Replicas != 1+w.full() {
			fail("cancel of %d: %+v %v, reference %d", id, r, ok, 1+w.full())
		}
	}
	if tr.Waiting() != 0 {
		fail("%d waiters left", tr.Waiting())
	}
}

// Want is what Register waits for.
func TestWantIsWhatRegisterWaitsFor(t *testing.T) {
	tr := newTracker("b", "c")
	for _, l := range []Level{One, Count(2), Count(3), Quorum, All, {}} {
		_, res, _ := tr.Register([]uint64{1}, l, true, []string{"b", "c"})
		assert.Equal(t, res.Want, tr.Want(l, true, 2), "%v", l)
	}
}
