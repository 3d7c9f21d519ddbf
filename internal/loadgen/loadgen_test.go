package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
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
	st, err := store.New(store.DefaultConfig(), nil)
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
