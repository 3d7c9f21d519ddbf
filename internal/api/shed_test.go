package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

// heldReplicator holds every write in Replicate until release is closed,
// saying on entered when one arrives.
type heldReplicator struct {
	entered chan struct{}
	release chan struct{}
}

func (h heldReplicator) Replicate(ctx context.Context, _ acks.Level, likes []store.Like, _ []bool) (acks.Result, vclock.Dot) {
	select {
	case h.entered <- struct{}{}:
	case <-h.release: // released: nobody waits for entries any more
		return acks.Result{Replicas: 1, Want: 1}, vclock.Dot{}
	}
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return acks.Result{Replicas: 1, Want: 1}, vclock.Dot{}
}

type refusals struct {
	nopObserver
	mu  sync.Mutex
	got map[string]int
}

func (r *refusals) ObserveRefused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[reason]++
}

func (r *refusals) count(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[reason]
}

func serve(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, newRequest(method, target, body))
	return rec
}

func requireRefused(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	require.Equal(t, status, rec.Code, rec.Body.String())
	assert.Equal(t, "1", rec.Header().Get("Retry-After"))
	assert.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
	var body errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Equal(t, code, body.Error.Code)
	assert.NotEmpty(t, body.Error.Message)
}

// Finding 2 of issue #20: every compartment is bounded on its own. Its
// requests past the bound are refused at once with a 429, the other
// compartments keep serving, and a slot freed is taken again.
func TestCompartmentsShedLoadOnTheirOwn(t *testing.T) {
	tests := []struct {
		name, method, target, body, reason string
		other                              [3]string // a request of another compartment, served meanwhile
	}{
		{"writes", "POST", "/v1/posts/p/likes", `{"user":"u%d"}`, RefusedWrites, [3]string{"POST", "/v1/likes", `{"likes":[{"post":"q","user":"x"}]}`}},
		{"article writes", "POST", "/like", `{"post":"p","user":"u%d"}`, RefusedWrites, [3]string{"GET", "/v1/posts/p/likes", ""}},
		{"bulk", "POST", "/v1/likes", `{"likes":[{"post":"p","user":"u%d"}]}`, RefusedBulk, [3]string{"POST", "/v1/posts/q/likes", `{"user":"x"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.New(store.DefaultConfig())
			require.NoError(t, err)
			cfg := DefaultConfig()
			cfg.MaxWrites, cfg.MaxBulk, cfg.MaxReads = 2, 2, 2
			held := heldReplicator{entered: make(chan struct{}), release: make(chan struct{})}
			seen := &refusals{got: map[string]int{}}
			srv, err := New(cfg, st, &fakeMembers{}, zerolog.Nop(), Options{Replicator: held, Observer: seen})
			require.NoError(t, err)
			h := srv.Handler()

			var wg sync.WaitGroup
			codes := make([]int, 2)
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					codes[i] = serve(h, tt.method, tt.target, strings.Replace(tt.body, "%d", string(rune('a'+i)), 1)).Code
				}()
				<-held.entered // inside, holding its slot
			}
			requireRefused(t, serve(h, tt.method, tt.target, strings.Replace(tt.body, "%d", "z", 1)), http.StatusTooManyRequests, codeOverloaded)
			assert.Equal(t, 1, seen.count(tt.reason))
			assert.False(t, st.Has("p", "uz"), "a refused like is not stored")

			// Another compartment is not affected (its write is held too,
			// so let it through once it is in).
			otherDone := make(chan int, 1)
			go func() { otherDone <- serve(h, tt.other[0], tt.other[1], tt.other[2]).Code }()
			if tt.other[0] == "POST" {
				<-held.entered
			}
			close(held.release)
			assert.Less(t, <-otherDone, 300)
			wg.Wait()
			for _, c := range codes {
				assert.Less(t, c, 300, "held requests finish")
			}

			assert.Less(t, serve(h, tt.method, tt.target, strings.Replace(tt.body, "%d", "y", 1)).Code, 300, "a freed slot is taken again")
		})
	}
}

// Reads have their compartment, and a read waiting for a version holds no
// slot of it while it waits: reads waiting on a lagging node do not lock
// out the others (review of #20), and once its like comes each takes a
// slot again to answer. Writes are served meanwhile.
func TestReadsWaitingForAVersionHoldNoReadSlot(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	likes := signalingLikes{Store: st, waiting: make(chan store.Like)}
	cfg := DefaultConfig()
	cfg.MaxReads = 1
	cfg.ReadWait = time.Minute // what releases a waiter is its like
	seen := &refusals{got: map[string]int{}}
	srv, err := New(cfg, likes, &fakeMembers{}, zerolog.Nop(), Options{Observer: seen})
	require.NoError(t, err)
	h := srv.Handler()
	users := []string{"alice", "bob", "carol"} // more waiters than slots, each for its own like
	done := make([]chan int, len(users))
	for i, u := range users {
		done[i] = make(chan int, 1)
		v := Version{Dot: vclock.Dot{Origin: 42, Seq: uint64(i + 1)}, Post: "p1", User: u}.String()
		go func() { done[i] <- serve(h, "GET", withVersion("/v1/posts/p1/likes", v), "").Code }()
		select {
		case <-likes.waiting:
		case code := <-done[i]:
			require.FailNow(t, "a read with a version was answered before it waited", "status %d", code)
		}
	}
	assert.Equal(t, http.StatusOK, serve(h, "GET", "/v1/counts?post=p1", "").Code, "a read is served beside the waiters")
	assert.Zero(t, seen.count(RefusedReads))
	// One like at a time, so each waiter finds the slot free.
	for i, u := range users {
		assert.Equal(t, http.StatusCreated, serve(h, "POST", "/v1/posts/p1/likes", `{"user":"`+u+`"}`).Code, "writes have their own room")
		assert.Equal(t, http.StatusOK, <-done[i], "%s's waiting read sees the like", u)
	}
}

// A waiter whose like comes while every read slot is taken is refused
// like any read then (429, Retry-After): the bound holds, and nothing
// queues; its retry finds the like here and does not wait.
func TestAWaiterWokenIntoAFullCompartmentIsRefused(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	likes := signalingLikes{Store: st, waiting: make(chan store.Like)}
	cfg := DefaultConfig()
	cfg.MaxReads = 1
	cfg.ReadWait = time.Minute
	srv, err := New(cfg, likes, &fakeMembers{}, zerolog.Nop())
	require.NoError(t, err)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- serve(srv.Handler(), "GET", withVersion("/v1/posts/p1/likes", aliceLikesP1), "") }()
	<-likes.waiting
	require.True(t, srv.reads.enter(), "the waiter holds no slot: another read takes the only one")
	st.Like("p1", "alice")
	requireRefused(t, <-done, http.StatusTooManyRequests, codeOverloaded)
	srv.reads.leave()
	assert.Zero(t, srv.reads.busy.Load(), "the refused waiter left no slot taken")
	assert.Equal(t, http.StatusOK, serve(srv.Handler(), "GET", withVersion("/v1/posts/p1/likes", aliceLikesP1), "").Code)
}

// A read that held the compartment's only slot keeps the bound: another
// read is refused meanwhile.
func TestReadCompartment(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.MaxReads = 1
	seen := &refusals{got: map[string]int{}}
	srv, err := New(cfg, st, &fakeMembers{}, zerolog.Nop(), Options{Observer: seen})
	require.NoError(t, err)
	require.True(t, srv.reads.enter(), "a read in progress")
	requireRefused(t, serve(srv.Handler(), "GET", "/v1/counts?post=p1", ""), http.StatusTooManyRequests, codeOverloaded)
	assert.Equal(t, 1, seen.count(RefusedReads))
	srv.reads.leave()
	assert.Equal(t, http.StatusOK, serve(srv.Handler(), "GET", "/v1/counts?post=p1", "").Code)
}

// A client's bulk imports over its rate are refused; another client's are
// not; and the buckets kept stay bounded.
func TestBulkRatePerClient(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.BulkRate, cfg.BulkBurst = 0.001, 2 // a token every 1000s: the test never sees one come back
	seen := &refusals{got: map[string]int{}}
	srv, err := New(cfg, st, &fakeMembers{}, zerolog.Nop(), Options{Observer: seen})
	require.NoError(t, err)
	from := func(addr string) *httptest.ResponseRecorder {
		req := newRequest("POST", "/v1/likes", `{"likes":[{"post":"p","user":"u"}]}`)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	assert.Equal(t, http.StatusOK, from("10.0.0.1:1000").Code)
	assert.Equal(t, http.StatusOK, from("10.0.0.1:1001").Code, "a burst of 2, from any port of the address")
	requireRefused(t, from("10.0.0.1:1002"), http.StatusTooManyRequests, codeRateLimited)
	assert.Equal(t, 1, seen.count(RefusedRate))
	assert.Equal(t, http.StatusOK, from("10.0.0.2:1000").Code, "another client has its own bucket")

	rates := newClientRates(1, 1)
	now := time.Now()
	for i := range 3 * maxRateClients {
		rates.allow(fmt.Sprintf("c%d", i), now)
	}
	assert.LessOrEqual(t, rates.len(), maxRateClients)
}

// An IPv6 client is its /64: the addresses of one network share a bucket
// (a client rotating through its /64 gets no fresh one per address); an
// IPv4 client is its address, and an IPv4 address mapped into IPv6 is that
// address (review of #20).
func TestBulkRateKeysIPv6ByNetwork(t *testing.T) {
	tests := []struct{ a, b string }{
		{"[2001:db8:1:2::1]:1000", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1000"},
		{"[2001:db8:1:2::1%eth0]:1000", "[2001:db8:1:2::2]:1000"},
		{"10.0.0.1:1000", "[::ffff:10.0.0.1]:2000"},
	}
	for _, tt := range tests {
		assert.Equal(t, clientOf(&http.Request{RemoteAddr: tt.a}), clientOf(&http.Request{RemoteAddr: tt.b}), "%s and %s", tt.a, tt.b)
	}
	for _, other := range [][2]string{
		{"[2001:db8:1:2::1]:1000", "[2001:db8:1:3::1]:1000"},
		{"10.0.0.1:1000", "10.0.0.2:1000"},
	} {
		assert.NotEqual(t, clientOf(&http.Request{RemoteAddr: other[0]}), clientOf(&http.Request{RemoteAddr: other[1]}), "%s and %s", other[0], other[1])
	}

	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.BulkRate, cfg.BulkBurst = 0.001, 2
	srv, err := New(cfg, st, &fakeMembers{}, zerolog.Nop())
	require.NoError(t, err)
	for i := range 4 {
		req := newRequest("POST", "/v1/likes", `{"likes":[{"post":"p","user":"u"}]}`)
		req.RemoteAddr = fmt.Sprintf("[2001:db8:1:2::%x]:1000", i+1)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if i < 2 {
			assert.Equal(t, http.StatusOK, rec.Code, "the burst")
		} else {
			requireRefused(t, rec, http.StatusTooManyRequests, codeRateLimited)
		}
	}
}

// A flood of new client addresses evicts the buckets used least recently,
// one at a time: a client over its rate that keeps asking stays over it
// (the table used to be cleared whole once full, every bucket reset).
func TestBulkRateFloodOfClientsResetsNobody(t *testing.T) {
	rates := newClientRates(0.001, 1)
	now := time.Now()
	require.True(t, rates.allow("victim-of-its-own-rate", now))
	for i := range 3 * maxRateClients {
		rates.allow(fmt.Sprintf("flood%d", i), now)
		if i%1000 == 0 {
			require.False(t, rates.allow("victim-of-its-own-rate", now), "after %d new clients", i)
		}
	}
	assert.LessOrEqual(t, rates.len(), maxRateClients, "bounded")
}
