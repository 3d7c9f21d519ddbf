package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/likesd/likesd/internal/store"
)

// bulkReply is the reply of POST /v1/likes.
type bulkReply struct {
	// Added counts the likes that were new; Existing those already there.
	Added    int `json:"added"`
	Existing int `json:"existing"`
	// Errors lists the likes that were rejected, by index in the request.
	Errors []itemError `json:"errors"`
	// Replicas held every stored like of the request when answered, this
	// node included (0 when none was stored).
	Replicas int `json:"replicas"`
}

type itemError struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// bulkState is one bulk import's buffers, pooled: a 10,000-like body
// then costs about one string per new like (the store keeps it) and little
// else.
type bulkState struct {
	lr    likeReader
	body  bulkReader
	items []likeFields // the valid likes, in order
	likes []store.Like // the stored ones, for replication
	added []bool
	reply bulkReply
}

var bulkPool = sync.Pool{New: func() any { return new(bulkState) }}

// maxPooledArena bounds the arena a pooled state keeps: a body of long ids
// may grow it far beyond the usual.
const maxPooledArena = 4 << 20

// POST /v1/likes  {"likes":[{"post":"p1","user":"alice"}, ...]}
//
// The body is read whole before anything is stored, so a malformed body
// stores nothing; then every valid like is stored through the same path as
// a single like (and so replicated like one), and an invalid one is
// reported by its index.
func (s *Server) postLikes(w http.ResponseWriter, r *http.Request) *apiError {
	st := bulkPool.Get().(*bulkState)
	defer func() {
		if st.lr.dec != nil { // nil when the query was refused before the body
			st.lr.dec.Reset(strings.NewReader("")) // keep no request alive in the pool
		}
		st.body = bulkReader{}
		if cap(st.lr.arena) > maxPooledArena {
			st.lr.arena = nil
		}
		st.reply = bulkReply{}
		bulkPool.Put(st)
	}()
	level, e := s.writeQuery(r)
	if e != nil {
		return e
	}
	st.body = bulkReader{r: http.MaxBytesReader(w, r.Body, s.cfg.MaxBulkBodyBytes), reading: &s.bulkReading, max: s.cfg.MaxBulkReadBytes}
	if st.lr.dec == nil {
		st.lr.dec = jsontext.NewDecoder(&st.body, decodeOptions...)
	} else {
		st.lr.dec.Reset(&st.body, decodeOptions...)
	}
	st.lr.arena, st.items = st.lr.arena[:0], st.items[:0]
	st.likes, st.added = st.likes[:0], st.added[:0]
	st.reply.Errors = []itemError{}
	e = s.readBulk(st)
	st.body.release()
	if e != nil {
		if e == errBulkReading {
			return s.refuseReading(w)
		}
		return e
	}
	// The slot is taken once the body is read: a client that sends its
	// body slowly holds a connection (and MaxBulkReadBytes), not a slot.
	if e := s.enter(w, s.bulk); e != nil {
		return e
	}
	defer s.bulk.leave()
	if e := s.writable(w); e != nil {
		return e
	}
	if e := s.bulkOverBudget(w, st); e != nil {
		return e
	}

	// Consecutive likes of one post (the usual import order) share its
	// string.
	var post string
	for _, it := range st.items {
		if p := st.lr.arena[it.post.off:it.post.end]; post == "" || string(p) != post {
			post = string(p)
		}
		user := string(st.lr.arena[it.user.off:it.user.end])
		added, _ := s.likes.Like(post, user)
		s.observe.ObserveLike(added)
		st.likes, st.added = append(st.likes, store.Like{Post: post, User: user}), append(st.added, added)
		if added {
			st.reply.Added++
		} else {
			st.reply.Existing++
		}
	}
	status := http.StatusOK
	if len(st.likes) > 0 {
		res, _ := s.replicas.Replicate(r.Context(), level, st.likes, st.added)
		st.reply.Replicas = res.Replicas
		if !res.Met() {
			status = http.StatusAccepted
			w.Header().Set("Retry-After", "1")
		}
	}
	clear(st.likes) // keep no ids alive in the pool
	writeJSON(w, status, st.reply)
	return nil
}

// bulkReader is a bulk import's body being read: the bytes it read count
// against Config.MaxBulkReadBytes, all imports being read together, until
// release. It is the decoder's reader: what it has read is about what the
// import's buffers hold (the arena keeps the ids unquoted, the decoder
// what it has not consumed yet).
type bulkReader struct {
	r       io.Reader
	reading *atomic.Int64 // Server.bulkReading
	max     int64
	held    int64 // of reading, this body's
	full    bool  // past max: the body is refused
}

// errReadingFull ends a body whose bytes would take the imports being read
// past Config.MaxBulkReadBytes.
var errReadingFull = errors.New("api: bulk bodies being read are over MaxBulkReadBytes")

// Read returns errReadingFull, and no bytes, from the read that takes the
// total past the bound on: the decoder would parse bytes that came with
// an error and might never report it.
func (b *bulkReader) Read(p []byte) (int, error) {
	if b.full {
		return 0, errReadingFull
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.held += int64(n)
		if b.reading.Add(int64(n)) > b.max {
			b.full = true
			return 0, errReadingFull
		}
	}
	return n, err
}

// release gives back the bytes the body counted.
func (b *bulkReader) release() {
	if b.reading != nil {
		b.reading.Add(-b.held)
	}
	b.held = 0
}

// errBulkReading is what bodyError makes of errReadingFull; refuseReading
// answers it.
var errBulkReading = &apiError{http.StatusTooManyRequests, codeOverloaded, ""}

// refuseReading refuses an import whose body would take the bodies being
// read past MaxBulkReadBytes: 429, counted as the bulk compartment's.
func (s *Server) refuseReading(w http.ResponseWriter) *apiError {
	s.observe.ObserveRefused(RefusedBulk)
	w.Header().Set("Retry-After", retryAfterSeconds)
	return &apiError{http.StatusTooManyRequests, codeOverloaded, fmt.Sprintf(
		"this node is reading as many bulk import bytes as it takes at once (%d): retry after Retry-After seconds, here or on another node", s.cfg.MaxBulkReadBytes)}
}

// bulkOverBudget refuses, whole, an import with a like this node does
// not hold while it is over its memory budget: nothing is stored, and the
// client retries it as it was. An import of likes all held already (a
// retry) goes through.
func (s *Server) bulkOverBudget(w http.ResponseWriter, st *bulkState) *apiError {
	if s.budget == nil || !s.budget.Over() {
		return nil
	}
	for _, it := range st.items {
		if s.overBudget(w, string(st.lr.arena[it.post.off:it.post.end]), string(st.lr.arena[it.user.off:it.user.end])) {
			return errOverBudget
		}
	}
	return nil
}

// readBulk reads the whole body into st: the valid likes into st.items, the
// invalid ones into st.reply.Errors.
func (s *Server) readBulk(st *bulkState) *apiError {
	dec, max := st.lr.dec, s.cfg.MaxBulkBodyBytes
	const shape = `{"likes":[{"post":"p1","user":"alice"}, ...]}`
	if dec.PeekKind() != '{' {
		if err := dec.SkipValue(); err != nil {
			return bodyError(err, max)
		}
		return badRequest(codeBadJSON, "request body must be a JSON object: %s", shape)
	}
	if _, err := dec.ReadToken(); err != nil {
		return bodyError(err, max)
	}
	seen := false
	for dec.PeekKind() != '}' {
		rawName, err := dec.ReadValue()
		if err != nil {
			return bodyError(err, max)
		}
		name, err := jsontext.AppendUnquote(st.lr.name[:0], rawName)
		st.lr.name = name
		switch {
		case err != nil || string(name) != "likes":
			return badRequest(codeUnknownField, "unknown field %q: the body has only \"likes\": %s", name, shape)
		case seen:
			return badRequest(codeBadJSON, "field \"likes\" appears more than once")
		}
		seen = true
		if e := s.readBulkLikes(st); e != nil {
			return e
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return bodyError(err, max)
	}
	if e := st.lr.expectEnd(max); e != nil {
		return e
	}
	if !seen {
		return badRequest(codeBadJSON, "field \"likes\" is required: %s", shape)
	}
	return nil
}

// readBulkLikes reads the array of likes.
func (s *Server) readBulkLikes(st *bulkState) *apiError {
	dec, max := st.lr.dec, s.cfg.MaxBulkBodyBytes
	if dec.PeekKind() != '[' {
		if err := dec.SkipValue(); err != nil {
			return bodyError(err, max)
		}
		return badRequest(codeBadJSON, "field \"likes\" must be a JSON array of likes")
	}
	if _, err := dec.ReadToken(); err != nil {
		return bodyError(err, max)
	}
	for i := 0; dec.PeekKind() != ']'; i++ {
		if i == s.cfg.MaxBulkLikes {
			return &apiError{http.StatusRequestEntityTooLarge, codeTooManyLikes,
				fmt.Sprintf("at most %d likes per request: send the rest in another", s.cfg.MaxBulkLikes)}
		}
		mark := len(st.lr.arena)
		got, bad, err := st.lr.readLike(true)
		if err != nil {
			return bodyError(err, max)
		}
		if bad == nil {
			bad = s.checkLike(&st.lr, got, true)
		}
		if bad != nil {
			st.lr.arena = st.lr.arena[:mark]
			st.reply.Errors = append(st.reply.Errors, itemError{Index: i, Code: bad.code, Message: bad.message})
			continue
		}
		st.items = append(st.items, got)
	}
	if _, err := dec.ReadToken(); err != nil {
		return bodyError(err, max)
	}
	return nil
}
