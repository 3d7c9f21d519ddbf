// Package seeddesign reproduces, for benchmarks only, the design likesd grew
// from (the original article): one JSON like per memberlist broadcast,
// memberlist's DefaultLocalConfig with RetransmitMult 4, a map behind one
// mutex, and a full JSON state exchanged by push/pull but merged only on
// join. It exists so that likesd's gains are measured beside it in the same
// run, not assumed. It is the one importer of memberlist outside
// internal/cluster, on purpose: it must be the seed's design, not ours.
package seeddesign

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/hashicorp/memberlist"
)

type likeDomain struct {
	User string `json:"user"`
	Post string `json:"post"`
}

// Node is one seed-design node.
type Node struct {
	mu    sync.Mutex
	likes map[string]map[string]struct{}
	ml    *memberlist.Memberlist
	queue *memberlist.TransmitLimitedQueue
	msgs  chan []byte
}

// Start runs a node gossiping on bindAddr:bindPort, joining join if set.
func Start(name, bindAddr string, bindPort int, join string) (*Node, error) {
	n := &Node{likes: map[string]map[string]struct{}{}, msgs: make(chan []byte, 1024)}
	c := memberlist.DefaultLocalConfig()
	c.Name, c.BindAddr, c.BindPort, c.AdvertisePort = name, bindAddr, bindPort, bindPort
	c.RetransmitMult = 4
	c.Delegate = n
	c.LogOutput = discard{}
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, err
	}
	n.ml = ml
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: ml.NumMembers, RetransmitMult: c.RetransmitMult}
	go n.loop()
	if join != "" {
		if _, err := ml.Join([]string{join}); err != nil {
			return nil, err
		}
	}
	return n, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Shutdown stops gossip.
func (n *Node) Shutdown() { _ = n.ml.Shutdown() }

func (n *Node) add(post, user string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	set, ok := n.likes[post]
	if !ok {
		set = map[string]struct{}{}
		n.likes[post] = set
	}
	if _, dup := set[user]; dup {
		return false
	}
	set[user] = struct{}{}
	return true
}

func (n *Node) loop() {
	for b := range n.msgs {
		var l likeDomain
		if json.Unmarshal(b, &l) == nil {
			n.add(l.Post, l.User)
		}
	}
}

type broadcast []byte

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}

// memberlist.Delegate, as the article wrote it (NotifyMsg copies, which the
// article forgot: without it memberlist's buffer reuse corrupts likes).
func (n *Node) NodeMeta(int) []byte { return nil }
func (n *Node) NotifyMsg(b []byte)  { n.msgs <- append([]byte(nil), b...) }
func (n *Node) GetBroadcasts(overhead, limit int) [][]byte {
	return n.queue.GetBroadcasts(overhead, limit)
}
func (n *Node) LocalState(bool) []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	state := map[string][]string{}
	for p, users := range n.likes {
		for u := range users {
			state[p] = append(state[p], u)
		}
	}
	b, _ := json.Marshal(state)
	return b
}
func (n *Node) MergeRemoteState(buf []byte, join bool) {
	if len(buf) == 0 || !join {
		return
	}
	var state map[string][]string
	_ = json.Unmarshal(buf, &state)
	for p, users := range state {
		for _, u := range users {
			n.add(p, u)
		}
	}
}

// Handler serves the subset of likesd's API the load generator uses.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/posts/{post}/likes", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ User string }
		if json.NewDecoder(r.Body).Decode(&body) != nil || body.User == "" {
			http.Error(w, `{"error":{"code":"bad_json"}}`, http.StatusBadRequest)
			return
		}
		post := r.PathValue("post")
		status := http.StatusOK
		if n.add(post, body.User) {
			status = http.StatusCreated
			msg, _ := json.Marshal(likeDomain{User: body.User, Post: post})
			n.queue.QueueBroadcast(broadcast(msg))
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"post":%q,"user":%q,"liked":true}`, post, body.User)
	})
	mux.HandleFunc("GET /v1/posts/{post}/likes/{user}", func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		_, liked := n.likes[r.PathValue("post")][r.PathValue("user")]
		n.mu.Unlock()
		fmt.Fprintf(w, `{"liked":%t}`, liked)
	})
	mux.HandleFunc("GET /v1/counts", func(w http.ResponseWriter, r *http.Request) {
		counts := map[string]int{}
		n.mu.Lock()
		for _, p := range r.URL.Query()["post"] {
			counts[p] = len(n.likes[p])
		}
		n.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"counts": counts})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ready"}`)) })
	mux.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strconv.Itoa(n.queue.NumQueued())))
	})
	return mux
}
