package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
	"github.com/likesd/likesd/internal/vclock"
)

// Replicator is what the API needs from the cluster to acknowledge a write
// at a level.
type Replicator interface {
	// Replicate hands likes this node holds (added[i]: likes[i] was new
	// here) to the cluster and waits, within ctx and the write timeout,
	// until level is met (the zero Level is the node's default). It returns
	// how many replicas held them when it returned, and the dot of likes[0]
	// (Seq 0 when it got none). It must not keep likes or added after it
	// returns (the API reuses them).
	Replicate(ctx context.Context, level acks.Level, likes []store.Like, added []bool) (acks.Result, vclock.Dot)
}

// localOnly is the Replicator of a server with no cluster: this node
// holds every like, and that is all there is.
type localOnly struct{}

func (localOnly) Replicate(context.Context, acks.Level, []store.Like, []bool) (acks.Result, vclock.Dot) {
	return acks.Result{Replicas: 1, Want: 1}, vclock.Dot{}
}

// writeLevel reads ?w= (1 to 64, quorum or all); absent is the node's
// default.
func writeLevel(q url.Values) (acks.Level, *apiError) {
	v, e := single(q, "w")
	if e != nil || !q.Has("w") {
		return acks.Level{}, e
	}
	l, err := acks.ParseLevel(v)
	if err != nil {
		return acks.Level{}, badRequest(codeInvalidParam, "w must be 1 to %d, quorum or all, got %q", acks.MaxLevel, v)
	}
	return l, nil
}

// writeStatus is the status of a write: 201 for a new like and 200 for one
// already here once its level is met, 202 when it is stored here but not
// yet on as many replicas as asked.
func writeStatus(r acks.Result, added bool) int {
	switch {
	case !r.Met():
		return http.StatusAccepted
	case added:
		return http.StatusCreated
	}
	return http.StatusOK
}
