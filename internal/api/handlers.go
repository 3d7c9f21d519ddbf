package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/store"
)

type likeReply struct {
	Post  string `json:"post"`
	User  string `json:"user"`
	Liked bool   `json:"liked"`
	Count int    `json:"count"`
	// Replicas held the like when answered, this node included.
	Replicas int `json:"replicas"`
	// Version names the like for read-your-writes (docs/api.md).
	Version string `json:"version"`
}

type countReply struct {
	Post  string `json:"post"`
	Count int    `json:"count"`
}

type likedReply struct {
	Post  string `json:"post"`
	User  string `json:"user"`
	Liked bool   `json:"liked"`
}

type likersReply struct {
	Post  string   `json:"post"`
	Count int      `json:"count"`
	Users []string `json:"users"`
	Next  string   `json:"next,omitempty"`
}

type statusReply struct {
	Status string `json:"status"`
	// Detail says what a ready node does not do (over its memory budget).
	Detail string `json:"detail,omitempty"`
}

// POST /v1/posts/{post}/likes  {"user":"alice"}
func (s *Server) postLike(w http.ResponseWriter, r *http.Request) *apiError {
	post, e := s.pathID(r, "post")
	if e != nil {
		return e
	}
	level, e := s.writeQuery(r)
	if e != nil {
		return e
	}
	_, user, e := s.readLikeBody(w, r, false)
	if e != nil {
		return e
	}
	return s.like(w, r, level, post, user)
}

// writeQuery reads a write's query string: w, the write level.
func (s *Server) writeQuery(r *http.Request) (acks.Level, *apiError) {
	q, e := query(r)
	if e != nil {
		return acks.Level{}, e
	}
	return writeLevel(q)
}

// POST /like  {"post":"p1","user":"alice"}: the article's route.
func (s *Server) postLikeAlias(w http.ResponseWriter, r *http.Request) *apiError {
	level, e := s.writeQuery(r)
	if e != nil {
		return e
	}
	post, user, e := s.readLikeBody(w, r, true)
	if e != nil {
		return e
	}
	return s.like(w, r, level, post, user)
}

// readLikeBody reads the body of a single like: one JSON object, bounded in
// size, strict (see decodeOptions). Any Content-Type is accepted: the
// article's curl sent JSON as a form.
func (s *Server) readLikeBody(w http.ResponseWriter, r *http.Request, withPost bool) (post, user string, _ *apiError) {
	lr := likePool.Get().(*likeReader)
	defer lr.release()
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if lr.dec == nil {
		lr.dec = jsontext.NewDecoder(body, decodeOptions...)
	} else {
		lr.dec.Reset(body, decodeOptions...)
	}
	lr.arena = lr.arena[:0]
	got, bad, err := lr.readLike(withPost)
	if err != nil {
		return "", "", bodyError(err, s.cfg.MaxBodyBytes)
	}
	if e := lr.expectEnd(s.cfg.MaxBodyBytes); e != nil {
		return "", "", e
	}
	if bad == nil {
		bad = s.checkLike(lr, got, withPost)
	}
	if bad != nil {
		return "", "", bad
	}
	if withPost {
		post = string(lr.arena[got.post.off:got.post.end])
	}
	return post, string(lr.arena[got.user.off:got.user.end]), nil
}

// checkLike validates the ids of a like read by lr: the one rule for single
// likes and every item of a bulk import.
func (s *Server) checkLike(lr *likeReader, got likeFields, withPost bool) *apiError {
	if withPost {
		if e := checkIDBytes("post", lr.arena[got.post.off:got.post.end], s.cfg.MaxIDBytes); e != nil {
			return e
		}
	}
	return checkIDBytes("user", lr.arena[got.user.off:got.user.end], s.cfg.MaxIDBytes)
}

func (s *Server) like(w http.ResponseWriter, r *http.Request, level acks.Level, post, user string) *apiError {
	if e := s.enter(w, s.writes); e != nil {
		return e
	}
	defer s.writes.leave()
	if e := s.writable(w); e != nil {
		return e
	}
	if s.overBudget(w, post, user) {
		return errOverBudget
	}
	added, count := s.likes.Like(post, user)
	s.observe.ObserveLike(added)
	one := onePool.Get().(*oneLike)
	one.likes[0], one.added[0] = store.Like{Post: post, User: user}, added
	res, dot := s.replicas.Replicate(r.Context(), level, one.likes[:], one.added[:])
	*one = oneLike{} // keep no ids alive in the pool
	onePool.Put(one)
	if !res.Met() {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, writeStatus(res, added), likeReply{
		Post: post, User: user, Liked: true, Count: count,
		Replicas: res.Replicas, Version: Version{Dot: dot, Post: post, User: user}.String(),
	})
	return nil
}

// writable refuses a write while this node cannot make likes durable (its
// disk is full or failing): 507, and the client retries later or
// elsewhere. Reads go on.
func (s *Server) writable(w http.ResponseWriter) *apiError {
	err := s.likes.Writable()
	if err == nil {
		return nil
	}
	w.Header().Set("Retry-After", "1")
	return &apiError{status: http.StatusInsufficientStorage, code: codeDiskUnwritable,
		message: "this node cannot write likes to its disk now; retry later or through another node: " + err.Error()}
}

// oneLike is the arguments of a single like's Replicate, pooled: slices
// made for one call would escape to the heap at every like.
type oneLike struct {
	likes [1]store.Like
	added [1]bool
}

var onePool = sync.Pool{New: func() any { return new(oneLike) }}

// likePool holds the readers of single likes: a decoder and its buffers
// per like otherwise.
var likePool = sync.Pool{New: func() any { return new(likeReader) }}

// release returns lr to likePool, keeping no request alive in it.
func (lr *likeReader) release() {
	lr.dec.Reset(emptyBody)
	if cap(lr.arena) > 64<<10 {
		lr.arena = nil
	}
	likePool.Put(lr)
}

var emptyBody = strings.NewReader("")

// errOverBudget refuses a new like past the memory budget.
var errOverBudget = &apiError{http.StatusInsufficientStorage, codeOverBudget,
	"this node is over its memory budget and takes no new likes: retry after Retry-After seconds, or on another node; likes it already holds, and reads, are served"}

// overBudgetRetryAfter: memory falls back under the budget when an
// operator acts (docs/deploy.md), not within a second.
const overBudgetRetryAfter = "10"

// overBudget reports whether the node refuses user's like of post: it is
// over its memory budget and does not hold the like already (a repeat
// costs no memory, and is answered as always). It sets Retry-After and
// counts the refusal.
func (s *Server) overBudget(w http.ResponseWriter, post, user string) bool {
	if s.budget == nil || !s.budget.Over() || s.likes.Has(post, user) {
		return false
	}
	s.observe.ObserveRefused(RefusedMemory)
	w.Header().Set("Retry-After", overBudgetRetryAfter)
	return true
}

// GET /v1/posts/{post}/likes[?version=V]
func (s *Server) getCount(w http.ResponseWriter, r *http.Request) *apiError {
	post, e := s.pathID(r, "post")
	if e != nil {
		return e
	}
	if e := s.awaitVersion(w, r, nil); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, countReply{Post: post, Count: s.likes.Count(post)})
	return nil
}

// GET /v1/posts/{post}/likes/{user}[?version=V]
func (s *Server) getLiked(w http.ResponseWriter, r *http.Request) *apiError {
	post, e := s.pathID(r, "post")
	if e != nil {
		return e
	}
	user, e := s.pathID(r, "user")
	if e != nil {
		return e
	}
	if e := s.awaitVersion(w, r, nil); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, likedReply{Post: post, User: user, Liked: s.likes.Has(post, user)})
	return nil
}

// GET /v1/posts/{post}/likers?limit=N&after=USER[&version=V]
func (s *Server) getLikers(w http.ResponseWriter, r *http.Request) *apiError {
	post, e := s.pathID(r, "post")
	if e != nil {
		return e
	}
	q, e := query(r)
	if e != nil {
		return e
	}
	limit, e := s.pageLimit(q)
	if e != nil {
		return e
	}
	after, e := single(q, "after")
	if e != nil {
		return e
	}
	if after != "" { // empty: from the first user
		if e := checkID("after", after, s.cfg.MaxIDBytes); e != nil {
			return e
		}
	}
	if e := s.awaitVersion(w, r, q); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, s.likersPage(post, after, limit))
	return nil
}

func (s *Server) likersPage(post, after string, limit int) likersReply {
	users, count, more := s.likes.Likers(post, after, limit)
	reply := likersReply{Post: post, Count: count, Users: users}
	if more && len(users) > 0 {
		reply.Next = users[len(users)-1]
	}
	return reply
}

// GET /v1/counts?post=p1&post=p2[&version=V]
func (s *Server) getCounts(w http.ResponseWriter, r *http.Request) *apiError {
	q, e := query(r)
	if e != nil {
		return e
	}
	posts := q["post"]
	switch {
	case len(posts) == 0:
		return badRequest(codeInvalidParam, "at least one post query parameter is required")
	case len(posts) > s.cfg.MaxBatchPosts:
		return badRequest(codeInvalidParam, "at most %d posts per call, got %d", s.cfg.MaxBatchPosts, len(posts))
	}
	for _, p := range posts {
		if e := checkID("post", p, s.cfg.MaxIDBytes); e != nil {
			return e
		}
	}
	if e := s.awaitVersion(w, r, q); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, struct {
		Counts map[string]int `json:"counts"`
	}{s.likes.Counts(posts)})
	return nil
}

// GET /likes?post=p1[&detail=1][&version=V]: the article's route.
func (s *Server) getLikesAlias(w http.ResponseWriter, r *http.Request) *apiError {
	q, e := query(r)
	if e != nil {
		return e
	}
	post, e := single(q, "post")
	if e != nil {
		return e
	}
	if e := checkID("post", post, s.cfg.MaxIDBytes); e != nil {
		return e
	}
	detail, e := single(q, "detail")
	if e != nil {
		return e
	}
	var withUsers bool
	switch {
	case !q.Has("detail"), detail == "0", detail == "false":
	case detail == "1", detail == "true":
		withUsers = true
	default:
		return badRequest(codeInvalidParam, "detail must be 1, true, 0 or false, got %q", detail)
	}
	if e := s.awaitVersion(w, r, q); e != nil {
		return e
	}
	if withUsers {
		writeJSON(w, http.StatusOK, s.likersPage(post, "", s.cfg.MaxPageSize))
	} else {
		writeJSON(w, http.StatusOK, countReply{Post: post, Count: s.likes.Count(post)})
	}
	return nil
}

// GET /v1/cluster
func (s *Server) getCluster(w http.ResponseWriter, _ *http.Request) *apiError {
	members := s.members.Members()
	if members == nil {
		members = []Member{}
	}
	writeJSON(w, http.StatusOK, struct {
		Self    string   `json:"self"`
		Members []Member `json:"members"`
	}{s.members.Self(), members})
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) *apiError {
	writeJSON(w, http.StatusOK, statusReply{Status: "ok"})
	return nil
}

// readyz is 200 once the node is synced (it holds what the cluster held
// when it joined, or is provably alone) and until it starts draining.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) *apiError {
	switch {
	case s.draining.Load():
		writeJSON(w, http.StatusServiceUnavailable, statusReply{Status: "draining"})
	case !s.members.Ready():
		writeJSON(w, http.StatusServiceUnavailable, statusReply{Status: "starting"})
	case s.budget != nil && s.budget.Over():
		// Still ready: it serves reads, repeats and likes from peers, and
		// taking every node over its budget out of rotation would stop
		// those too.
		writeJSON(w, http.StatusOK, statusReply{"ready", "over memory budget: new likes are refused (507)"})
	default:
		writeJSON(w, http.StatusOK, statusReply{Status: "ready"})
	}
	return nil
}

// awaitVersion is read your writes: when the query has a version (the
// token a like reply gave), it waits until this node holds the like the
// token names, at most ReadWait and no longer than the client waits, so
// the read that follows sees it. q is the request's parsed query, or nil
// to parse it here. Every read calls it once its other input is checked:
// a bad request is told so at once, not after a wait.
//
// Reads call it within their read slot (shed). A read that has to wait
// gives its slot back for the wait and takes one again to answer: waiting
// costs no CPU, and reads waiting on a lagging node would otherwise lock
// every other read out. Waiters are bounded by the connections
// (Config.MaxConns), each holding a goroutine and a store waiter; one that
// finds every slot taken when its like comes is refused with 429, as any
// read then.
func (s *Server) awaitVersion(w http.ResponseWriter, r *http.Request, q url.Values) *apiError {
	if q == nil {
		var e *apiError
		if q, e = query(r); e != nil {
			return e
		}
	}
	token, e := single(q, "version")
	if e != nil || !q.Has("version") {
		return e
	}
	v, err := ParseVersion(token, s.cfg.MaxIDBytes)
	if err != nil {
		return badRequest(codeInvalidParam, "version is not a token a like reply gave (pass it as it came): %s",
			strings.TrimPrefix(err.Error(), ErrBadVersion.Error()+": "))
	}
	if s.likes.Has(v.Post, v.User) { // the usual case: already here, no wait
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadWait)
	s.reads.leave()
	seen := s.likes.WaitHas(ctx, v.Post, v.User)
	cancel()
	if !s.reads.reenter() { // shed leaves the slot taken again either way
		return s.refuse(w, s.reads)
	}
	if seen {
		return nil
	}
	w.Header().Set("Retry-After", "1")
	return &apiError{http.StatusServiceUnavailable, codeVersionNotSeen, fmt.Sprintf(
		"this node has not yet seen the like this version names (waited %v): retry, here or on another node", s.cfg.ReadWait)}
}

// pathID returns a path parameter unescaped (ids may hold any escaped byte,
// "/" included) and validated.
func (s *Server) pathID(r *http.Request, name string) (string, *apiError) {
	v := chi.URLParam(r, name)
	// chi routes on the escaped path when the URL had escapes, and its
	// parameters are then still escaped.
	if r.URL.RawPath != "" {
		u, err := url.PathUnescape(v)
		if err != nil {
			return "", badRequest(codeInvalidID, "%s is not a valid URL path segment: %v", name, err)
		}
		v = u
	}
	return v, checkID(name, v, s.cfg.MaxIDBytes)
}

// query parses the query string strictly: url.URL.Query drops the pairs it
// cannot parse ("post=%zz"), and the client should hear why.
func query(r *http.Request) (url.Values, *apiError) {
	if r.URL.RawQuery == "" {
		return nil, nil // reads of a nil Values are fine: no map per write
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest(codeInvalidParam, "query string is not valid: %v (escape %% as %%25)", err)
	}
	return q, nil
}

// single returns the value of a parameter that may be given at most once
// ("" when absent): a second value would be silently ignored otherwise.
func single(q url.Values, name string) (string, *apiError) {
	switch vs := q[name]; len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	default:
		return "", badRequest(codeInvalidParam, "%s is given %d times; it takes one value", name, len(vs))
	}
}

func (s *Server) pageLimit(q url.Values) (int, *apiError) {
	v, e := single(q, "limit")
	if e != nil || !q.Has("limit") {
		return s.cfg.DefaultPageSize, e
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > s.cfg.MaxPageSize {
		return 0, badRequest(codeInvalidParam, "limit must be an integer from 1 to %d, got %q", s.cfg.MaxPageSize, v)
	}
	return n, nil
}
