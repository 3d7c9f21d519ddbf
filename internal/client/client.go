// Package client is a small typed client of likesd's HTTP API, for tests,
// the load generator and anyone scripting against a cluster. Ids are
// path-escaped here, so callers pass them raw.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client talks to one likesd node.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the node at baseURL (e.g. "http://127.0.0.1:8080").
// A nil hc uses http.DefaultClient.
func New(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: hc}
}

// Error is a non-2xx reply.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("likesd: %d %s: %s", e.Status, e.Code, e.Message) }

// Member is one entry of GET /v1/cluster.
type Member struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"`
	// Breaker is the answering node's circuit breaker for this member
	// (closed, open, half-open); empty for the node itself.
	Breaker string `json:"breaker,omitempty"`
}

// Member returns the member named name, if listed.
func (c Cluster) Member(name string) (Member, bool) {
	for _, m := range c.Members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// Cluster is GET /v1/cluster.
type Cluster struct {
	Self    string   `json:"self"`
	Members []Member `json:"members"`
}

// Alive returns the names of the alive members.
func (c Cluster) Alive() []string {
	var out []string
	for _, m := range c.Members {
		if m.State == "alive" {
			out = append(out, m.Name)
		}
	}
	return out
}

// Like posts user's like of post; created is true for a first like (201).
func (c *Client) Like(ctx context.Context, post, user string) (created bool, count int, err error) {
	body := strings.NewReader(`{"user":` + quote(user) + `}`)
	var reply struct {
		Count int `json:"count"`
	}
	status, err := c.do(ctx, http.MethodPost, "/v1/posts/"+url.PathEscape(post)+"/likes", body, &reply)
	return status == http.StatusCreated, reply.Count, err
}

// LikeReply is a like's whole reply.
type LikeReply struct {
	Status   int    `json:"-"` // 201 new, 200 already there, 202 stored but not yet on w replicas
	Count    int    `json:"count"`
	Replicas int    `json:"replicas"`
	Version  string `json:"version"` // pass to reads for read-your-writes
}

// LikeAt posts user's like of post at write level w (1 to 64, quorum or
// all; empty: the node's default).
func (c *Client) LikeAt(ctx context.Context, post, user, w string) (LikeReply, error) {
	body := strings.NewReader(`{"user":` + quote(user) + `}`)
	path := "/v1/posts/" + url.PathEscape(post) + "/likes"
	if w != "" {
		path += "?w=" + url.QueryEscape(w)
	}
	var reply LikeReply
	status, err := c.do(ctx, http.MethodPost, path, body, &reply)
	reply.Status = status
	return reply, err
}

// HasLiked reports whether user likes post, as the node sees it once it
// has seen the like version names (empty: now).
func (c *Client) HasLiked(ctx context.Context, post, user, version string) (bool, error) {
	path := "/v1/posts/" + url.PathEscape(post) + "/likes/" + url.PathEscape(user)
	if version != "" {
		path += "?version=" + url.QueryEscape(version)
	}
	var reply struct {
		Liked bool `json:"liked"`
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, &reply)
	return reply.Liked, err
}

// Count returns post's count.
func (c *Client) Count(ctx context.Context, post string) (int, error) {
	var reply struct {
		Count int `json:"count"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/posts/"+url.PathEscape(post)+"/likes", nil, &reply)
	return reply.Count, err
}

// Counts returns the counts of posts in one call.
func (c *Client) Counts(ctx context.Context, posts ...string) (map[string]int, error) {
	q := url.Values{"post": posts}
	var reply struct {
		Counts map[string]int `json:"counts"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/counts?"+q.Encode(), nil, &reply)
	return reply.Counts, err
}

// Cluster returns the node's view of the members.
func (c *Client) Cluster(ctx context.Context) (Cluster, error) {
	var reply Cluster
	_, err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, &reply)
	return reply, err
}

// Ready reports whether /readyz answers 200.
func (c *Client) Ready(ctx context.Context) bool {
	status, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil)
	return err == nil && status == http.StatusOK
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, into any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return resp.StatusCode, &Error{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if into != nil {
		if err := json.Unmarshal(raw, into); err != nil {
			return resp.StatusCode, fmt.Errorf("likesd: %s %s: bad reply: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}
