package api

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

type switchBudget struct{ over atomic.Bool }

func (b *switchBudget) Over() bool { return b.over.Load() }

// Issue #20: past its memory budget a node refuses new likes (507), and
// serves repeats, reads and readiness as before.
func TestOverBudgetRefusesOnlyNewLikes(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	m := &fakeMembers{}
	m.joined.Store(true)
	budget := &switchBudget{}
	seen := &refusals{got: map[string]int{}}
	srv, err := New(DefaultConfig(), st, m, zerolog.Nop(), Options{Budget: budget, Observer: seen})
	require.NoError(t, err)
	h := srv.Handler()
	require.Equal(t, http.StatusCreated, serve(h, "POST", "/v1/posts/p/likes", `{"user":"held"}`).Code)

	budget.over.Store(true)
	rec := serve(h, "POST", "/v1/posts/p/likes", `{"user":"new"}`)
	require.Equal(t, http.StatusInsufficientStorage, rec.Code)
	assertErrorCode(t, rec, codeOverBudget)
	assert.Equal(t, overBudgetRetryAfter, rec.Header().Get("Retry-After"))
	rec = serve(h, "POST", "/like", `{"post":"p","user":"new"}`)
	assert.Equal(t, http.StatusInsufficientStorage, rec.Code)
	rec = serve(h, "POST", "/v1/likes", `{"likes":[{"post":"p","user":"held"},{"post":"p","user":"new"}]}`)
	assert.Equal(t, http.StatusInsufficientStorage, rec.Code, "an import with a new like is refused whole")
	assert.False(t, st.Has("p", "new"), "nothing new stored")
	assert.Equal(t, 3, seen.count(RefusedMemory))

	assert.Equal(t, http.StatusOK, serve(h, "POST", "/v1/posts/p/likes", `{"user":"held"}`).Code, "a repeat is answered")
	assert.Equal(t, http.StatusOK, serve(h, "POST", "/v1/likes", `{"likes":[{"post":"p","user":"held"}]}`).Code, "so is an import of held likes")
	assert.Equal(t, http.StatusOK, serve(h, "GET", "/v1/posts/p/likes", "").Code)
	ready := serve(h, "GET", "/readyz", "")
	assert.Equal(t, http.StatusOK, ready.Code)
	assert.JSONEq(t, `{"status":"ready","detail":"over memory budget: new likes are refused (507)"}`, ready.Body.String())

	budget.over.Store(false)
	assert.Equal(t, http.StatusCreated, serve(h, "POST", "/v1/posts/p/likes", `{"user":"new"}`).Code)
	assert.JSONEq(t, `{"status":"ready"}`, serve(h, "GET", "/readyz", "").Body.String())
}
