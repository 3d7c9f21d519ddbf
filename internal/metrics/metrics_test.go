package metrics

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/store"
)

type fakeCluster struct{}

func (fakeCluster) Stats() cluster.Stats {
	return cluster.Stats{FramesQueued: 7, BytesQueued: 9000, InboxDropped: 2, SyncSessions: 3, SyncPulled: 11,
		StreamsInbound: 4, StreamsRefused: 12, StreamsDisplaced: 1, StreamsTimedOut: 6, StreamBuffered: 8192,
		HandshakesPending: 3, HandshakesCut: 7,
		HandshakesRefused: cluster.HandshakeRefusals{UnknownKey: 3, Auth: 2}, AcksRefused: 5, FramesRefused: 2, SyncStreamed: 8, SyncRefused: 10}
}
func (fakeCluster) QueuedFrames() int         { return 5 }
func (fakeCluster) PeerLikesRefused() uint64  { return 4 }
func (fakeCluster) PeerLikesDeferred() uint64 { return 13 }
func (fakeCluster) Ready() bool               { return true }
func (fakeCluster) Members() []cluster.Member {
	return []cluster.Member{{Name: "a", State: "alive"}, {Name: "b", State: "alive", Breaker: "open"},
		{Name: "c", State: "suspect", Breaker: "half-open"}, {Name: "d", State: "dead", Breaker: "closed"}}
}

type view struct{}

func (view) Self() string          { return "a" }
func (view) Members() []api.Member { return nil }
func (view) Ready() bool           { return true }

// The metrics as a scrape sees them, fed through the real API handler.
func TestScrapeThroughTheAPI(t *testing.T) {
	m := New(fakeCluster{})
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	srv, err := api.New(api.DefaultConfig(), st, view{}, zerolog.Nop(), api.Options{Observer: m, Metrics: m.Handler()})
	require.NoError(t, err)
	h := srv.Handler()
	for _, body := range []string{`{"user":"a"}`, `{"user":"a"}`, `{"user":"b"}`} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/posts/p/likes", strings.NewReader(body)))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/nope", nil))

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, 200, rec.Code)
	raw, _ := io.ReadAll(rec.Body)
	out := string(raw)
	for _, want := range []string{
		`likesd_likes_total{result="new"} 2`,
		`likesd_likes_total{result="duplicate"} 1`,
		`likesd_http_request_duration_seconds_count{code="2xx",method="POST",route="/v1/posts/{post}/likes"} 3`,
		`likesd_http_request_duration_seconds_count{code="4xx",method="GET",route=""} 1`,
		`likesd_fastpath_frames_sent_total 7`,
		`likesd_fastpath_bytes_sent_total 9000`,
		`likesd_inbox_dropped_total 2`,
		`likesd_sync_sessions_total 3`,
		`likesd_sync_likes_pulled_total 11`,
		`likesd_sync_bytes_received_total 0`,
		`likesd_gossip_queue_frames 5`,
		`likesd_members{state="alive"} 2`,
		`likesd_members{state="suspect"} 1`,
		`likesd_members{state="dead"} 1`,
		`likesd_members{state="left"} 0`,
		`likesd_ready 1`,
		`likesd_peer_breaker{peer="b",state="open"} 1`,
		`likesd_peer_breaker{peer="b",state="closed"} 0`,
		`likesd_peer_breaker{peer="c",state="half-open"} 1`,
		`likesd_peer_breaker{peer="d",state="closed"} 1`,
		`likesd_writes_accepted_total 0`,
		`likesd_peer_likes_refused_total 4`,
		`likesd_peer_likes_deferred_total 13`,
		`likesd_streams_inbound 4`,
		`likesd_streams_capped_total{cap="total"} 12`,
		`likesd_streams_capped_total{cap="peer"} 1`,
		`likesd_streams_capped_total{cap="handshakes"} 7`,
		`likesd_stream_handshakes_pending 3`,
		`likesd_stream_handshakes_refused_total{reason="unknown_key"} 3`,
		`likesd_stream_handshakes_refused_total{reason="auth"} 2`,
		`likesd_stream_handshakes_refused_total{reason="downgrade"} 0`,
		`likesd_acks_refused_total 5`,
		`likesd_fastpath_frames_refused_total 2`,
		`likesd_sync_streamed_total 8`,
		`likesd_sync_refused_total 10`,
		`likesd_streams_timed_out_total 6`,
		`likesd_stream_buffered_bytes 8192`,
		`process_resident_memory_bytes`,
		`go_memstats_heap_inuse_bytes`,
	} {
		assert.Contains(t, out, want)
	}
}

// The names say what the series count: no gossip_ name for what the direct
// fast path counts.
func TestHelpTextsMatchTheSeries(t *testing.T) {
	rec := httptest.NewRecorder()
	New(fakeCluster{}).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "likesd_gossip_") {
			assert.True(t, strings.HasPrefix(line, "likesd_gossip_queue_frames "), "only the gossip broadcast queue is named gossip: %s", line)
		}
	}
	assert.Contains(t, out, "likesd_fastpath_frames_sent_total 7")
}

// Finding 1 of issue #20: a client choosing methods and paths must not grow
// the request series. Every request here is distinct; the series are those
// of the router's routes and a closed set of methods.
func TestRequestSeriesStayBounded(t *testing.T) {
	m := New(fakeCluster{})
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	srv, err := api.New(api.DefaultConfig(), st, view{}, zerolog.Nop(), api.Options{Observer: m, Metrics: m.Handler()})
	require.NoError(t, err)
	h := srv.Handler()
	series := func() int {
		mfs, err := m.reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "likesd_http_request_duration_seconds" {
				return len(mf.GetMetric())
			}
		}
		return 0
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			method := fmt.Sprintf("M%d", i) // any token is a method to net/http
			path := fmt.Sprintf("/x%d/v1/posts/p%d/likes", i, i)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, nil))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/v1/posts/p%d/likes", i), nil))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, fmt.Sprintf("/v1/posts/p%d/likes", i), nil))
		}
	}
	send(0, 50)
	before := series()
	send(50, 1000)
	assert.Equal(t, before, series(), "a thousand new methods and paths add no series")
	assert.LessOrEqual(t, before, 10)
}

type budget struct{}

func (budget) Over() bool      { return true }
func (budget) Used() int64     { return 900 }
func (budget) Limit() int64    { return 1000 }
func (budget) Mark() int64     { return 850 }
func (budget) Full() bool      { return false }
func (budget) HardMark() int64 { return 925 }

func TestBudgetGauges(t *testing.T) {
	m := New(fakeCluster{})
	m.WatchBudget(budget{})
	m.ObserveRefused(api.RefusedMemory)
	m.ObserveRefused("not a reason") // ignored: no new series
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := rec.Body.String()
	for _, want := range []string{
		"likesd_memory_budget_over 1", "likesd_memory_budget_used_bytes 900", "likesd_memory_budget_limit_bytes 1000",
		"likesd_memory_budget_refuse_bytes 850", "likesd_memory_budget_full 0", "likesd_memory_budget_peers_refuse_bytes 925", `likesd_http_refused_total{reason="memory"} 1`, `likesd_http_refused_total{reason="writes"} 0`,
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "not a reason")
}
