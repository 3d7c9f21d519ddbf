package api

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// Load shedding. The node's work is split into compartments (a bulkhead):
// single likes, bulk imports and reads each have their own bound on the
// requests served at once. A request past its compartment's bound is
// answered 429 at once: nothing queues, so a flood costs one atomic add per
// refused request and holds no memory, and a flood of bulk imports leaves
// reads and single likes their own room.

// Refusal reasons, the closed set Observer.ObserveRefused is given.
const (
	RefusedWrites = "writes" // the single-like compartment was full
	RefusedBulk   = "bulk"   // the bulk-import compartment was full
	RefusedReads  = "reads"  // the read compartment was full
	RefusedMemory = "memory" // over the memory budget: a new like refused (507)
	RefusedAuth   = "auth"   // no valid token (401), or a read token for a write (403)
	RefusedRate   = "rate"   // a client's bulk imports over its rate
)

// compartment bounds the requests of one kind in progress.
type compartment struct {
	reason string // also its name in messages
	limit  int64
	busy   atomic.Int64
}

func newCompartment(reason string, limit int) *compartment {
	return &compartment{reason: reason, limit: int64(limit)}
}

// enter takes a slot, or reports that there is none: then the caller
// refuses the request and must not call leave.
func (c *compartment) enter() bool {
	if c.busy.Add(1) > c.limit {
		c.busy.Add(-1)
		return false
	}
	return true
}

func (c *compartment) leave() { c.busy.Add(-1) }

// reenter takes a slot again after leave, for one that was given back for
// a while (awaitVersion): it reports whether the slot is within the limit,
// and the caller leaves it either way.
func (c *compartment) reenter() bool { return c.busy.Add(1) <= c.limit }

// shed serves h within compartment c, or answers 429 when c is full.
func (s *Server) shed(c *compartment, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) *apiError {
		if e := s.enter(w, c); e != nil {
			return e
		}
		defer c.leave()
		return h(w, r)
	}
}

// enter takes a slot of c, or refuses the request (429, counted): then the
// caller must not call c.leave.
func (s *Server) enter(w http.ResponseWriter, c *compartment) *apiError {
	if c.enter() {
		return nil
	}
	return s.refuse(w, c)
}

// refuse answers a request c has no slot for: 429, counted.
func (s *Server) refuse(w http.ResponseWriter, c *compartment) *apiError {
	s.observe.ObserveRefused(c.reason)
	w.Header().Set("Retry-After", retryAfterSeconds)
	return &apiError{http.StatusTooManyRequests, codeOverloaded, fmt.Sprintf(
		"this node is serving as many %s as it takes at once (%d): retry after Retry-After seconds, here or on another node", c.reason, c.limit)}
}

// rateLimited serves h unless the client's bulk imports are over
// Config.BulkRate.
func (s *Server) rateLimited(h handlerFunc) handlerFunc {
	if s.bulkRates == nil {
		return h
	}
	over := &apiError{http.StatusTooManyRequests, codeRateLimited, fmt.Sprintf(
		"this client's bulk imports are over %g per second (bursts of %d): retry after Retry-After seconds", s.cfg.BulkRate, s.cfg.BulkBurst)}
	return func(w http.ResponseWriter, r *http.Request) *apiError {
		if !s.bulkRates.allow(clientOf(r), time.Now()) {
			s.observe.ObserveRefused(RefusedRate)
			w.Header().Set("Retry-After", retryAfterSeconds)
			return over
		}
		return h(w, r)
	}
}

// retryAfterSeconds is the Retry-After of refusals: a second is long enough
// for a burst to pass and short enough not to idle a client.
var retryAfterSeconds = strconv.Itoa(1)
