package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/store"
)

// While the disk takes no writes, a write is refused before it touches the
// replica (507, Retry-After), and reads go on.
func TestAnUnwritableDiskRefusesWritesAndKeepsReads(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	st.Like("p", "before")
	st.SetJournal(fullDisk{})
	members := &fakeMembers{}
	members.joined.Store(true)
	srv := contractServer(t, st, members)
	for _, w := range []struct{ target, body string }{
		{"/v1/posts/p/likes", `{"user":"alice"}`},
		{"/like", `{"post":"p","user":"alice"}`},
		{"/v1/likes", `{"likes":[{"post":"p","user":"alice"}]}`},
	} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, newRequest(http.MethodPost, w.target, w.body))
		assert.Equal(t, http.StatusInsufficientStorage, rec.Code, w.target)
		assert.Equal(t, "1", rec.Header().Get("Retry-After"))
		assert.Contains(t, rec.Body.String(), `"code":"disk_unwritable"`)
	}
	assert.False(t, st.Has("p", "alice"), "nothing stored that could not be made durable")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, newRequest(http.MethodGet, "/v1/posts/p/likes", ""))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"post":"p","count":1}`, rec.Body.String())
}
