package faultcheck

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

var (
	a = Like{"p1", "a"}
	b = Like{"p1", "b"}
	c = Like{"p2", "c"}
)

// lostA is LostBy when a, first acknowledged by n1#0, is lost.
var lostA = map[Life]int{{Node: 1, Gen: 0}: 1}

func life(n, g int) Life { return Life{Node: n, Gen: g} }

func ack(l Like, lf Life, status, ms int) Ack {
	return Ack{Like: l, Life: lf, Status: status, At: at(ms)}
}

// everywhere is a final state where every node holds likes.
func everywhere(nodes int, likes ...Like) map[int]map[string][]string {
	out := map[int]map[string][]string{}
	for n := 1; n <= nodes; n++ {
		out[n] = map[string][]string{}
		for _, l := range likes {
			out[n][l.Post] = append(out[n][l.Post], l.User)
		}
	}
	return out
}

// base is a clean run of three nodes: a, b, c acknowledged and everywhere.
func base() History {
	return History{
		Start:     t0,
		Sent:      []Like{a, b, c},
		Acks:      []Ack{ack(a, life(1, 0), 201, 100), ack(b, life(2, 0), 201, 110), ack(c, life(3, 0), 201, 120)},
		Final:     everywhere(3, a, b, c),
		Healed:    at(5000),
		Converged: at(6200),
	}
}

func TestCheck(t *testing.T) {
	cfg := Config{AsyncWindow: 100 * time.Millisecond}
	tests := []struct {
		name  string
		edit  func(h *History)
		want  Report // the fields compared; Sent, Examples and Heal are ignored
		fails []string
		// strict are the failures in strict mode, when not the same.
		strict []string
	}{
		{
			name: "clean",
			edit: func(*History) {},
			want: Report{Acked: 3, Converged: true},
		},
		{
			name: "lost on a node that lived on is real loss",
			edit: func(h *History) { h.Final = everywhere(3, b, c) },
			want: Report{Acked: 3, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "killed within the async window",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Ends = []End{{Life: life(1, 0), At: at(104), Kill: true}}
			},
			want:   Report{Acked: 3, LostAsync: 1, AckToKill: []time.Duration{4 * time.Millisecond}, Converged: true},
			strict: []string{"1 acknowledged likes lost in the async window (strict)"},
		},
		{
			name: "killed after the async window is real loss",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Ends = []End{{Life: life(1, 0), At: at(1100), Kill: true}}
			},
			want: Report{Acked: 3, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "a graceful stop must not lose",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Ends = []End{{Life: life(1, 0), At: at(101), Kill: false}}
			},
			want: Report{Acked: 3, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "the kill of a later life does not excuse",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Ends = []End{{Life: life(1, 1), At: at(101), Kill: true}}
			},
			want: Report{Acked: 3, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "cut off from every peer until killed",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Cutoffs = []Cutoff{{Node: 1, From: at(50), To: at(900)}, {Node: 1, From: at(900), To: at(3000)}}
				h.Ends = []End{{Life: life(1, 0), At: at(2000), Kill: true}}
			},
			want:   Report{Acked: 3, LostCutoff: 1, Converged: true},
			strict: []string{"1 acknowledged likes lost while cut off (strict)"},
		},
		{
			name: "cut off, but back before the kill, is real loss",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Cutoffs = []Cutoff{{Node: 1, From: at(50), To: at(1500)}}
				h.Ends = []End{{Life: life(1, 0), At: at(2000), Kill: true}}
			},
			want: Report{Acked: 3, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "cut off on another node does not excuse",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Cutoffs = []Cutoff{{Node: 2, From: at(0), To: at(3000)}}
				h.Ends = []End{{Life: life(1, 0), At: at(2000), Kill: true}}
			},
			want: Report{Acked: 3, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "also held by a node that lived on is real loss",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Acks = append(h.Acks, ack(a, life(2, 0), 200, 150))
				h.Ends = []End{{Life: life(1, 0), At: at(104), Kill: true}}
			},
			want: Report{Acked: 3, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "202 only, lost by a later kill, is expected",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Acks[0].Status = http.StatusAccepted
				h.Ends = []End{{Life: life(1, 0), At: at(9000), Kill: true}}
			},
			want: Report{Acked: 2, Accepted202: 1, Lost202: 1, Converged: true},
		},
		{
			name: "202 only, lost by a node that lived on, is real loss",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Acks[0].Status = http.StatusAccepted
			},
			want: Report{Acked: 2, Accepted202: 1, Lost: 1, LostBy: lostA, Converged: true}, fails: []string{"1 acknowledged likes lost"},
		},
		{
			name: "sent but never acknowledged may be missing",
			edit: func(h *History) {
				h.Sent = append(h.Sent, Like{"p3", "d"})
				h.Acks = append(h.Acks, Ack{Like: Like{"p3", "d"}, Life: life(1, 0), Status: http.StatusServiceUnavailable, At: at(10)})
			},
			want: Report{Acked: 3, Converged: true},
		},
		{
			name: "phantom",
			edit: func(h *History) { h.Final = everywhere(3, a, b, c, Like{"p1", "zz"}) },
			want: Report{Acked: 3, Phantoms: 1, Converged: true}, fails: []string{"1 phantom likes"},
		},
		{
			name: "diverged, not lost",
			edit: func(h *History) {
				h.Final[2]["p1"] = []string{"b"}
				h.Final[3]["p2"] = nil
				h.Converged = time.Time{}
			},
			want:  Report{Acked: 3, DivergedPosts: 2, DivergedLikes: 2},
			fails: []string{"2 posts diverged"},
		},
		{
			name: "a user listed twice by one node is held once",
			edit: func(h *History) { h.Final[1]["p1"] = []string{"a", "a", "b"} },
			want: Report{Acked: 3, Converged: true},
		},
		{
			name:  "identical but never converged",
			edit:  func(h *History) { h.Converged = time.Time{} },
			want:  Report{Acked: 3},
			fails: []string{"never converged"},
		},
		{
			name: "a count that goes down within a life",
			edit: func(h *History) {
				h.Counts = []CountSample{
					{Life: life(1, 0), Post: "p1", Count: 3, At: at(10)},
					{Life: life(1, 0), Post: "p1", Count: 5, At: at(20)},
					{Life: life(1, 0), Post: "p1", Count: 4, At: at(30)},
					{Life: life(1, 0), Post: "p1", Count: 5, At: at(40)},
					{Life: life(2, 0), Post: "p1", Count: 1, At: at(25)}, // another node
					{Life: life(1, 1), Post: "p1", Count: 0, At: at(50)}, // a restart resets
				}
			},
			want: Report{Acked: 3, Decreases: 1, Converged: true}, fails: []string{"1 count decreases"},
		},
		{
			name: "a process that exits by itself fails the run, and excuses no loss",
			edit: func(h *History) {
				h.Final = everywhere(3, b, c)
				h.Ends = []End{{Life: life(1, 0), At: at(101), Crash: true}}
			},
			want:  Report{Acked: 3, Lost: 1, LostBy: lostA, Crashes: 1, Converged: true},
			fails: []string{"1 acknowledged likes lost", "1 processes exited by themselves"},
		},
		{
			name: "samples are ordered by time, not by arrival in the history",
			edit: func(h *History) {
				h.Counts = []CountSample{
					{Life: life(1, 0), Post: "p1", Count: 5, At: at(20)},
					{Life: life(1, 0), Post: "p1", Count: 3, At: at(10)},
				}
			},
			want: Report{Acked: 3, Converged: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := base()
			tt.edit(&h)
			got := Check(h, cfg)
			assert.NotEmpty(t, got.Sent)
			got.Sent, got.Heal = 0, 0
			if len(tt.want.Examples) == 0 {
				got.Examples = nil
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.fails, got.Failures(false))
			wantStrict := tt.strict
			if wantStrict == nil {
				wantStrict = tt.fails
			}
			assert.Equal(t, wantStrict, got.Failures(true))
		})
	}
}

func TestCheckHealAndExamples(t *testing.T) {
	h := base()
	h.Final = everywhere(3, b, c)
	h.Ends = []End{{Life: life(1, 0), At: at(3000), Kill: false}}
	got := Check(h, DefaultConfig())
	assert.Equal(t, 1200*time.Millisecond, got.Heal)
	require.Len(t, got.Examples, 1)
	assert.Equal(t, "lost p1/a: 201 by n1#0 at +100ms (SIGTERM at +3s)", got.Examples[0])
}

func TestSummaryLine(t *testing.T) {
	s := Summary{}
	ok := Check(base(), DefaultConfig())
	assert.Empty(t, s.Add("seed=1", ok))

	h := base()
	h.Final = everywhere(3, c)
	h.Ends = []End{{Life: life(1, 0), At: at(104), Kill: true}, {Life: life(2, 0), At: at(119), Kill: true}}
	h.Converged = at(8000)
	async := Check(h, DefaultConfig())
	assert.Empty(t, s.Add("seed=2", async), "async losses pass unless strict")

	h = base()
	h.Final[3]["p2"] = nil
	h.Converged = time.Time{}
	assert.NotEmpty(t, s.Add("seed=3", Check(h, DefaultConfig())))

	assert.Equal(t, []string{"seed=3"}, s.Failed())
	assert.Equal(t, "faults: schedules=3 failed=1 acked=9 lost=0 lost_async=2 (ack→kill p50 4ms max 9ms) lost_cutoff=0 "+
		"accepted202=0 lost202=0 phantoms=0 diverged=1 (likes=1) decreases=0 crashes=0 heal p50=1.2s max=3s unconverged=1", s.Line())

	s.AddUnjudged("seed=4")
	assert.Equal(t, []string{"seed=3", "seed=4"}, s.Failed())
	assert.True(t, strings.HasPrefix(s.Line(), "faults: schedules=4 failed=2 "))
	assert.True(t, strings.HasSuffix(s.Line(), " unconverged=1 unjudged=1"))

	strict := Summary{Strict: true}
	assert.Equal(t, []string{"2 acknowledged likes lost in the async window (strict)"}, strict.Add("seed=2", async))
	assert.True(t, strings.HasSuffix(strict.Line(), " strict"))
}

func TestFmtDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		201935 * time.Nanosecond: "202µs",
		4400 * time.Microsecond:  "4ms",
		1234 * time.Millisecond:  "1.2s",
		21060 * time.Millisecond: "21.1s",
		0:                        "0s",
	} {
		assert.Equal(t, want, fmtDur(d))
	}
}

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	assert.Equal(t, time.Duration(3), quantile(ds, 0.5))
	assert.Equal(t, time.Duration(5), quantile(ds, 1))
	assert.Equal(t, time.Duration(1), quantile(ds, 0))
	assert.Equal(t, time.Duration(7), quantile([]time.Duration{7}, 0.5))
}
