package client

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/store"
)

type oneNode struct{}

func (oneNode) Self() string { return "n1" }
func (oneNode) Members() []api.Member {
	return []api.Member{{Name: "n1", Addr: "127.0.0.1:7946", State: "alive"}, {Name: "n2", State: "suspect", Breaker: "open"}}
}
func (oneNode) Ready() bool { return true }

// The client against the real API handler: ids with reserved characters
// round-trip, errors come back typed.
func TestClientAgainstTheAPI(t *testing.T) {
	st, err := store.New(store.DefaultConfig())
	require.NoError(t, err)
	srv, err := api.New(api.DefaultConfig(), st, oneNode{}, zerolog.Nop())
	require.NoError(t, err)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	c := New(ts.URL, nil)
	ctx := context.Background()

	created, n, err := c.Like(ctx, "a/b c?", `"quoted" ü`)
	require.NoError(t, err)
	assert.True(t, created)
	assert.Equal(t, 1, n)
	created, n, err = c.Like(ctx, "a/b c?", `"quoted" ü`)
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, 1, n)
	assert.True(t, st.Has("a/b c?", `"quoted" ü`))

	r, err := c.LikeAt(ctx, "a/b c?", "bob", "1")
	require.NoError(t, err)
	assert.Equal(t, 201, r.Status)
	assert.Equal(t, 2, r.Count)
	assert.Equal(t, 1, r.Replicas)
	assert.NotEmpty(t, r.Version)
	liked, err := c.HasLiked(ctx, "a/b c?", "bob", r.Version)
	require.NoError(t, err)
	assert.True(t, liked)
	liked, err = c.HasLiked(ctx, "a/b c?", "carol", "")
	require.NoError(t, err)
	assert.False(t, liked)
	_, err = c.LikeAt(ctx, "p", "u", "none")
	assert.ErrorContains(t, err, "invalid_param")

	got, err := c.Count(ctx, "a/b c?")
	require.NoError(t, err)
	assert.Equal(t, 2, got)
	counts, err := c.Counts(ctx, "a/b c?", "none")
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"a/b c?": 2, "none": 0}, counts)

	cl, err := c.Cluster(ctx)
	require.NoError(t, err)
	assert.Equal(t, "n1", cl.Self)
	assert.Equal(t, []string{"n1"}, cl.Alive())
	n2, ok := cl.Member("n2")
	require.True(t, ok)
	assert.Equal(t, "open", n2.Breaker, "the breaker state comes through")
	_, ok = cl.Member("n9")
	assert.False(t, ok)
	assert.True(t, c.Ready(ctx))

	_, _, err = c.Like(ctx, "p", "")
	var apiErr *Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 400, apiErr.Status)
	assert.Equal(t, "invalid_id", apiErr.Code)
}
