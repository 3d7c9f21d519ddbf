package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/store"
)

type single struct{}

func (single) Self() string          { return "n" }
func (single) Members() []api.Member { return nil }
func (single) Ready() bool           { return true }

// Two API servers over one store: a like is visible on the other at once,
// so every lag sample completes.
func TestRunAgainstTwoNodesSharingAStore(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	var targets []string
	for i := 0; i < 2; i++ {
		srv, err := api.New(api.DefaultConfig(), st, single{}, zerolog.Nop())
		require.NoError(t, err)
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		targets = append(targets, ts.URL)
	}
	rep, err := Run(context.Background(), Config{
		Targets: targets, Rate: 400, Duration: 500 * time.Millisecond, Concurrency: 8,
		Posts: 50, Zipf: true, LagSamples: 40,
	})
	require.NoError(t, err)
	assert.Zero(t, rep.Errors)
	// Offered: about rate × duration, never more; a starved machine may
	// run the dispatcher late and offer less (make test-loaded saw 152).
	assert.LessOrEqual(t, rep.Acked+rep.Missed, int64(240), "offered at most about rate × duration")
	assert.GreaterOrEqual(t, rep.Acked+rep.Missed, int64(100), "offered at least half of rate × duration")
	// Every ack is a new like stored; a like in flight when the run ends may
	// be stored without its ack counted, at most one per worker.
	stored := st.Stats().Likes
	assert.GreaterOrEqual(t, stored, int(rep.Acked))
	assert.LessOrEqual(t, stored, int(rep.Acked)+8)
	assert.Positive(t, rep.LagSamples)
	assert.Zero(t, rep.LagTimeouts)
	assert.Positive(t, rep.AckP99)
	assert.Contains(t, rep.String(), "offered 400/s")
}

func TestClosedLoopStopsByItselfAndCountsErrors(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	defer ts.Close()
	start := time.Now()
	rep, err := Run(context.Background(), Config{Targets: []string{ts.URL}, Duration: 200 * time.Millisecond, Concurrency: 4})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "bounded by Duration")
	assert.Zero(t, rep.Acked)
	assert.Positive(t, rep.Errors)
	assert.Empty(t, rep.Memory, "no /metrics: no memory figures")
}

// Samples are kept per reply with their target, and a window counts what
// was sent in it: here one target acknowledges and the other answers 202
// after a wait, as a node whose peers do not acknowledge in time.
func TestSamplesAndWindowsTellTargetsApart(t *testing.T) {
	acking := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	defer acking.Close()
	late := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer late.Close()
	rep, err := Run(context.Background(), Config{
		Targets: []string{acking.URL, late.URL}, Rate: 200, Duration: 400 * time.Millisecond,
		Concurrency: 8, Posts: 10, KeepSamples: true,
	})
	require.NoError(t, err)
	require.Positive(t, rep.Acked)
	require.Positive(t, rep.Accepted)
	assert.Len(t, rep.Samples, int(rep.Acked+rep.Accepted+rep.Errors), "one sample per reply")

	from, to := rep.Ended.Add(-time.Hour), rep.Ended.Add(time.Hour)
	all := rep.Window(from, to, nil)
	assert.Equal(t, rep.Acked, all.Acked)
	assert.Equal(t, rep.Accepted, all.Accepted)
	assert.Equal(t, all.Acked+all.Accepted+all.Errors, all.Sent)

	got := rep.Window(from, to, func(s Sample) bool { return s.Target == 1 })
	assert.Zero(t, got.Acked, "the late target never acknowledges")
	assert.Equal(t, rep.Accepted, got.Accepted)
	assert.Zero(t, got.AckP99, "no ack latency without acks")
	assert.GreaterOrEqual(t, got.ReplyP99, 20*time.Millisecond, "202s count in the reply latency")

	got = rep.Window(from, to, func(s Sample) bool { return s.Target == 0 })
	assert.Equal(t, rep.Acked, got.Acked)
	assert.Zero(t, got.Accepted)
	assert.Positive(t, got.AckP99)

	assert.Zero(t, rep.Window(rep.Ended, to, nil).Sent, "nothing is sent after the end")
	first := slices.MinFunc(rep.Samples, func(a, b Sample) int { return a.Sent.Compare(b.Sent) })
	assert.Equal(t, int64(1), rep.Window(first.Sent, first.Sent.Add(time.Nanosecond), nil).Sent, "from is inclusive, to exclusive")
}

// Window's quantiles are over acked likes; 202s and errors are counted
// apart, and the rate is over the window's length.
func TestWindowOnHandMadeSamples(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var rep Report
	for i := 1; i <= 100; i++ {
		rep.Samples = append(rep.Samples, Sample{Sent: t0.Add(time.Duration(i) * time.Millisecond), Latency: time.Duration(i) * time.Millisecond, Status: http.StatusCreated})
	}
	rep.Samples = append(rep.Samples,
		Sample{Sent: t0, Latency: 200 * time.Millisecond, Status: http.StatusAccepted},
		Sample{Sent: t0, Latency: time.Millisecond, Status: 0},
		Sample{Sent: t0, Latency: time.Millisecond, Status: http.StatusServiceUnavailable},
		Sample{Sent: t0.Add(time.Second), Latency: time.Hour, Status: http.StatusCreated}, // outside
	)
	got := rep.Window(t0, t0.Add(time.Second), nil)
	want := Window{From: t0, To: t0.Add(time.Second), Sent: 103, Acked: 100, Accepted: 1, Errors: 2,
		AckP50: 51 * time.Millisecond, AckP99: 100 * time.Millisecond, AckMax: 100 * time.Millisecond,
		ReplyP99: 100 * time.Millisecond}
	assert.Equal(t, want, got)
	assert.InDelta(t, 103.0, got.SentPerSec(), 0.001)
}
