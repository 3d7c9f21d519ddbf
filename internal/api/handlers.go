package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
)

type likeReply struct {
	Post  string `json:"post"`
	User  string `json:"user"`
	Liked bool   `json:"liked"`
	Count int    `json:"count"`
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
}

// POST /v1/posts/{post}/likes  {"user":"alice"}
func (s *Server) postLike(w http.ResponseWriter, r *http.Request) {
	post, e := s.pathID(r, "post")
	if e != nil {
		writeError(w, r, e)
		return
	}
	var body struct {
		User *string `json:"user"`
	}
	if e := s.decodeBody(w, r, &body); e != nil {
		writeError(w, r, e)
		return
	}
	s.like(w, r, post, body.User)
}

// POST /like  {"post":"p1","user":"alice"}: the article's route.
func (s *Server) postLikeAlias(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Post *string `json:"post"`
		User *string `json:"user"`
	}
	if e := s.decodeBody(w, r, &body); e != nil {
		writeError(w, r, e)
		return
	}
	post, e := s.validID("post", deref(body.Post))
	if e != nil {
		writeError(w, r, e)
		return
	}
	s.like(w, r, post, body.User)
}

func (s *Server) like(w http.ResponseWriter, r *http.Request, post string, user *string) {
	u, e := s.validID("user", deref(user))
	if e != nil {
		writeError(w, r, e)
		return
	}
	added, count := s.likes.Like(post, u)
	s.observe.ObserveLike(added)
	status := http.StatusOK
	if added {
		status = http.StatusCreated
	}
	writeJSON(w, status, likeReply{Post: post, User: u, Liked: true, Count: count})
}

// GET /v1/posts/{post}/likes
func (s *Server) getCount(w http.ResponseWriter, r *http.Request) {
	post, e := s.pathID(r, "post")
	if e != nil {
		writeError(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, countReply{Post: post, Count: s.likes.Count(post)})
}

// GET /v1/posts/{post}/likes/{user}
func (s *Server) getLiked(w http.ResponseWriter, r *http.Request) {
	post, e := s.pathID(r, "post")
	if e != nil {
		writeError(w, r, e)
		return
	}
	user, e := s.pathID(r, "user")
	if e != nil {
		writeError(w, r, e)
		return
	}
	writeJSON(w, http.StatusOK, likedReply{Post: post, User: user, Liked: s.likes.Has(post, user)})
}

// GET /v1/posts/{post}/likers?limit=N&after=USER
func (s *Server) getLikers(w http.ResponseWriter, r *http.Request) {
	post, e := s.pathID(r, "post")
	if e != nil {
		writeError(w, r, e)
		return
	}
	q := r.URL.Query()
	limit, e := s.pageLimit(q)
	if e != nil {
		writeError(w, r, e)
		return
	}
	after := ""
	if q.Has("after") && q.Get("after") != "" {
		if after, e = s.validID("after", q.Get("after")); e != nil {
			writeError(w, r, e)
			return
		}
	}
	writeJSON(w, http.StatusOK, s.likersPage(post, after, limit))
}

func (s *Server) likersPage(post, after string, limit int) likersReply {
	users, count, more := s.likes.Likers(post, after, limit)
	reply := likersReply{Post: post, Count: count, Users: users}
	if more && len(users) > 0 {
		reply.Next = users[len(users)-1]
	}
	return reply
}

// GET /v1/counts?post=p1&post=p2
func (s *Server) getCounts(w http.ResponseWriter, r *http.Request) {
	posts := r.URL.Query()["post"]
	switch {
	case len(posts) == 0:
		writeError(w, r, badRequest(codeInvalidParam, "at least one post query parameter is required"))
		return
	case len(posts) > s.cfg.MaxBatchPosts:
		writeError(w, r, badRequest(codeInvalidParam, "at most %d posts per call, got %d", s.cfg.MaxBatchPosts, len(posts)))
		return
	}
	for _, p := range posts {
		if _, e := s.validID("post", p); e != nil {
			writeError(w, r, e)
			return
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Counts map[string]int `json:"counts"`
	}{s.likes.Counts(posts)})
}

// GET /likes?post=p1[&detail=1]: the article's route.
func (s *Server) getLikesAlias(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	post, e := s.validID("post", q.Get("post"))
	if e != nil {
		writeError(w, r, e)
		return
	}
	detail := false
	switch q.Get("detail") {
	case "", "0", "false":
	case "1", "true":
		detail = true
	default:
		writeError(w, r, badRequest(codeInvalidParam, "detail must be 1, true, 0 or false"))
		return
	}
	if !detail {
		writeJSON(w, http.StatusOK, countReply{Post: post, Count: s.likes.Count(post)})
		return
	}
	writeJSON(w, http.StatusOK, s.likersPage(post, "", s.cfg.MaxPageSize))
}

// GET /v1/cluster
func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) {
	members := s.members.Members()
	if members == nil {
		members = []Member{}
	}
	writeJSON(w, http.StatusOK, struct {
		Self    string   `json:"self"`
		Members []Member `json:"members"`
	}{s.members.Self(), members})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, statusReply{"ok"})
}

// readyz is 200 once the node is synced (it holds what the cluster held
// when it joined, or is provably alone) and until it starts draining.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	switch {
	case s.draining.Load():
		writeJSON(w, http.StatusServiceUnavailable, statusReply{"draining"})
	case !s.members.Ready():
		writeJSON(w, http.StatusServiceUnavailable, statusReply{"starting"})
	default:
		writeJSON(w, http.StatusOK, statusReply{"ready"})
	}
}

// decodeBody reads one JSON object into dst: bounded in size, valid UTF-8
// (encoding/json would silently replace bad bytes), no unknown fields, nothing
// after it. Any Content-Type is accepted: the article's curl sent JSON as a
// form.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, dst any) *apiError {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		return decodeError(err, s.cfg.MaxBodyBytes)
	}
	if !utf8.Valid(raw) {
		return badRequest(codeInvalidID, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, s.cfg.MaxBodyBytes)
	}
	switch err := dec.Decode(&struct{}{}); {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return badRequest(codeBadJSON, "request body holds more than one JSON value")
	default:
		return badRequest(codeBadJSON, "unexpected data after the JSON object")
	}
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
	return s.validID(name, v)
}

// validID enforces the rules every post and user id follows.
func (s *Server) validID(name, v string) (string, *apiError) {
	switch {
	case v == "":
		return "", badRequest(codeInvalidID, "%s is required and must not be empty", name)
	case len(v) > s.cfg.MaxIDBytes:
		return "", badRequest(codeInvalidID, "%s is %d bytes, longer than %d", name, len(v), s.cfg.MaxIDBytes)
	case !utf8.ValidString(v):
		return "", badRequest(codeInvalidID, "%s is not valid UTF-8", name)
	}
	for _, c := range v {
		if unicode.IsControl(c) {
			return "", badRequest(codeInvalidID, "%s contains a control character (%U)", name, c)
		}
	}
	return v, nil
}

func (s *Server) pageLimit(q url.Values) (int, *apiError) {
	if !q.Has("limit") {
		return s.cfg.DefaultPageSize, nil
	}
	n, err := strconv.Atoi(q.Get("limit"))
	if err != nil || n < 1 || n > s.cfg.MaxPageSize {
		return 0, badRequest(codeInvalidParam, "limit must be an integer from 1 to %d, got %q", s.cfg.MaxPageSize, q.Get("limit"))
	}
	return n, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
