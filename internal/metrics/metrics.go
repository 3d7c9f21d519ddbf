// Package metrics owns likesd's Prometheus metrics: it reads the counters the
// other packages keep (cluster.Stats, the member list) at scrape time and
// implements the API's Observer for request latencies and like outcomes. It
// is the only package that imports the Prometheus client.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/likesd/likesd/internal/api"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/wal"
)

// Cluster is what the metrics read from the cluster at scrape time.
type Cluster interface {
	Stats() cluster.Stats
	QueuedFrames() int
	Members() []cluster.Member
	// PeerLikesRefused counts likes from peers whose ids break the API's
	// rule.
	PeerLikesRefused() uint64
	// PeerLikesDeferred counts likes from peers not applied (nor
	// acknowledged) while memory was past its hard mark.
	PeerLikesDeferred() uint64
	// Ready reports whether the node is synced.
	Ready() bool
}

// Metrics holds the registry and the collectors the API feeds.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.HistogramVec
	// The two like outcomes, resolved once: ObserveLike is on every like's path.
	likesNew, likesDuplicate prometheus.Counter
	// Requests refused to protect the node, by reason (api.Refused*).
	refused map[string]prometheus.Counter
}

// New registers the process, Go runtime, API and cluster metrics.
func New(c Cluster) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "likesd_http_request_duration_seconds",
			Help:    "HTTP request latency by route, method and status class.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route", "method", "code"}),
	}
	likes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "likesd_likes_total",
		Help: "Likes accepted through this node's API: result=new (201) or duplicate (200).",
	}, []string{"result"})
	m.likesNew, m.likesDuplicate = likes.WithLabelValues("new"), likes.WithLabelValues("duplicate")
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "likesd_http_refused_total",
		Help: "Requests refused to protect the node: reason=writes, bulk or reads (429, that compartment was full), rate (429, a client's bulk imports over its rate), memory (507, a new like over the memory budget), auth (401/403).",
	}, []string{"reason"})
	// Resolved once, from the closed set: a map read per refusal, never a
	// new series (ObserveRefused ignores any other reason).
	m.refused = map[string]prometheus.Counter{}
	for _, r := range []string{api.RefusedWrites, api.RefusedBulk, api.RefusedReads, api.RefusedRate, api.RefusedMemory, api.RefusedAuth} {
		m.refused[r] = refused.WithLabelValues(r)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, likes, refused)

	counter := func(name, help string, f func(cluster.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(c.Stats())) }))
	}
	counter("likesd_fastpath_frames_sent_total", "Frames of new likes the fast path built: sent to every peer (direct) or queued for broadcast (gossip).", func(s cluster.Stats) uint64 { return s.FramesQueued })
	counter("likesd_fastpath_likes_sent_total", "Likes framed on the fast path (in gossip mode forwarded ones too).", func(s cluster.Stats) uint64 { return s.LikesQueued })
	counter("likesd_fastpath_bytes_sent_total", "Bytes of fast-path frames, counted once per frame (not per peer or retransmit).", func(s cluster.Stats) uint64 { return s.BytesQueued })
	counter("likesd_fastpath_frames_received_total", "Fast-path frames of likes received from peers.", func(s cluster.Stats) uint64 { return s.FramesReceived })
	counter("likesd_fastpath_bytes_received_total", "Bytes of fast-path frames received.", func(s cluster.Stats) uint64 { return s.BytesReceived })
	counter("likesd_fastpath_likes_received_total", "Likes received on the fast path.", func(s cluster.Stats) uint64 { return s.LikesReceived })
	counter("likesd_fastpath_likes_applied_total", "Likes received on the fast path that were new here.", func(s cluster.Stats) uint64 { return s.LikesApplied })
	counter("likesd_fastpath_frames_refused_total", "Fast-path frames that came through memberlist in the name of a peer that sends its own on its session: dropped.", func(s cluster.Stats) uint64 { return s.FramesRefused })
	counter("likesd_log_overrun_total", "Likes that left the log before the fast path framed them (healed by anti-entropy).", func(s cluster.Stats) uint64 { return s.LogOverrun })
	counter("likesd_log_alone_total", "Likes logged while this node had no peer to send to: counted sent, to no one (a peer that joins gets them by sync).", func(s cluster.Stats) uint64 { return s.LoggedAlone })
	counter("likesd_inbox_dropped_total", "Received messages dropped because the inbox was full.", func(s cluster.Stats) uint64 { return s.InboxDropped })
	counter("likesd_queue_pruned_total", "Frames pruned from the broadcast queue at its limit.", func(s cluster.Stats) uint64 { return s.FramesPruned })
	counter("likesd_decode_errors_total", "Frames or states that failed to decode.", func(s cluster.Stats) uint64 { return s.DecodeErrors })
	counter("likesd_sync_sessions_total", "Anti-entropy sessions this node started and ended.", func(s cluster.Stats) uint64 { return s.SyncSessions })
	counter("likesd_sync_sessions_failed_total", "Anti-entropy sessions ended by a timeout or an unreachable peer.", func(s cluster.Stats) uint64 { return s.SyncFailed })
	counter("likesd_sync_likes_pulled_total", "Likes new here that anti-entropy brought.", func(s cluster.Stats) uint64 { return s.SyncPulled })
	counter("likesd_sync_likes_pushed_total", "Likes new to a peer that anti-entropy sent.", func(s cluster.Stats) uint64 { return s.SyncPushed })
	counter("likesd_sync_bytes_received_total", "Bytes of anti-entropy messages received.", func(s cluster.Stats) uint64 { return s.SyncBytesIn })
	counter("likesd_sync_bytes_sent_total", "Bytes of anti-entropy messages sent.", func(s cluster.Stats) uint64 { return s.SyncBytesOut })
	counter("likesd_sync_streamed_total", "Anti-entropy messages sent on a peer's session (the rest, to peers of the previous version, through memberlist, a connection each).", func(s cluster.Stats) uint64 { return s.SyncStreamed })
	counter("likesd_sync_refused_total", "Anti-entropy messages that came through memberlist in the name of a peer that sends its own on its session, or of no member: dropped.", func(s cluster.Stats) uint64 { return s.SyncRefused })
	counter("likesd_sync_dropped_total", "Anti-entropy messages dropped because a queue was full (the session times out and is retried).", func(s cluster.Stats) uint64 { return s.SyncDropped })
	counter("likesd_handoff_timeouts_total", "Hand-offs cut short by the shutdown bound.", func(s cluster.Stats) uint64 { return s.HandoffTimeouts })
	counter("likesd_sync_key_mismatches_total", "Digest comparisons refused because this node's and the peer's digest keys differ (a key rotation in progress, or a peer without key ids).", func(s cluster.Stats) uint64 { return s.SyncKeyMismatches })
	counter("likesd_sync_rekeys_total", "Times the replica's digests were recomputed because the primary key changed.", func(s cluster.Stats) uint64 { return s.SyncRekeys })
	counter("likesd_direct_batches_sent_total", "Batches sent straight to a peer (direct fast path).", func(s cluster.Stats) uint64 { return s.DirectSent })
	counter("likesd_direct_errors_total", "Batches that could not be sent to a peer.", func(s cluster.Stats) uint64 { return s.DirectErrors })
	counter("likesd_peer_queue_dropped_total", "Batches dropped (left to repair): a full peer queue, a peer that stopped answering, or a stream reset under them.", func(s cluster.Stats) uint64 { return s.PeerDropped })
	counter("likesd_streams_dialed_total", "Streams this node opened to peers for the direct fast path (one per peer while it answers).", func(s cluster.Stats) uint64 { return s.StreamsDialed })
	counter("likesd_streams_accepted_total", "Streams peers opened to this node.", func(s cluster.Stats) uint64 { return s.StreamsAccepted })
	counter("likesd_stream_resets_total", "Streams this node reset: a send hung while the peer answered pings, or the peer's breaker opened (what they held is left to repair).", func(s cluster.Stats) uint64 { return s.StreamResets })
	for capName, f := range map[string]func(cluster.Stats) uint64{
		"total":      func(s cluster.Stats) uint64 { return s.StreamsRefused },
		"peer":       func(s cluster.Stats) uint64 { return s.StreamsDisplaced },
		"handshakes": func(s cluster.Stats) uint64 { return s.HandshakesCut },
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "likesd_streams_capped_total",
			Help: "Streams from peers closed at a cap: cap=total, a new one refused as its handshake ended while --max-streams were open; " +
				"cap=peer, a peer's oldest closed for its newest; cap=handshakes, the oldest handshake in progress closed for a new one while --max-handshakes were.",
			ConstLabels: prometheus.Labels{"cap": capName},
		}, func() float64 { return float64(f(c.Stats())) }))
	}
	for reason, f := range map[string]func(cluster.HandshakeRefusals) uint64{
		"malformed":   func(r cluster.HandshakeRefusals) uint64 { return r.Malformed },
		"label":       func(r cluster.HandshakeRefusals) uint64 { return r.Label },
		"keying":      func(r cluster.HandshakeRefusals) uint64 { return r.Keying },
		"unknown_key": func(r cluster.HandshakeRefusals) uint64 { return r.UnknownKey },
		"auth":        func(r cluster.HandshakeRefusals) uint64 { return r.Auth },
		"downgrade":   func(r cluster.HandshakeRefusals) uint64 { return r.Downgrade },
		"peer":        func(r cluster.HandshakeRefusals) uint64 { return r.Peer },
		"address":     func(r cluster.HandshakeRefusals) uint64 { return r.Address },
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "likesd_stream_handshakes_refused_total",
			Help: "Stream handshakes refused, either way, by reason: malformed (a hello or reply that does not decode), label (another cluster's), " +
				"keying (one side has a key, the other none), unknown_key (a key id not in this node's keyring), auth (no proof of the key for this " +
				"session: a wrong key or a replayed hello), downgrade (a version 1 hello naming a node that speaks version 2, or no member), " +
				"peer (the node that answered a dial is not the one dialed), address (a keyed hello naming no alive or suspect member, or one at another address).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(f(c.Stats().HandshakesRefused)) }))
	}
	counter("likesd_streams_timed_out_total", "Streams from peers closed because their handshake, or a message once begun, did not arrive whole within the TCP timeout (a stalled or trickling peer).", func(s cluster.Stats) uint64 { return s.StreamsTimedOut })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_streams_inbound", Help: "Streams peers hold open to this node now, handshake done (at most --max-streams).",
	}, func() float64 { return float64(c.Stats().StreamsInbound) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_stream_handshakes_pending", Help: "Stream handshakes in progress now (at most --max-handshakes).",
	}, func() float64 { return float64(c.Stats().HandshakesPending) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_stream_buffered_bytes", Help: "Bytes of buffer held now by stream messages being read (a buffer grows only as its message arrives).",
	}, func() float64 { return float64(c.Stats().StreamBuffered) }))
	counter("likesd_writes_replicated_total", "Writes answered once their level was met (201/200).", func(s cluster.Stats) uint64 { return s.WritesMet })
	counter("likesd_writes_accepted_total", "Writes answered 202: stored here, fewer replicas than asked within the write timeout (or no peer reachable).", func(s cluster.Stats) uint64 { return s.WritesAccepted })
	counter("likesd_writes_abandoned_total", "Writes whose client went away while they waited for acknowledgements (stored here; no answer sent).", func(s cluster.Stats) uint64 { return s.WritesAbandoned })
	counter("likesd_acks_sent_total", "Acknowledgement messages sent to the origins of applied frames.", func(s cluster.Stats) uint64 { return s.AcksSent })
	counter("likesd_acks_streamed_total", "Of those, sent back on the origin's stream (the rest through memberlist, a connection each).", func(s cluster.Stats) uint64 { return s.AcksStreamed })
	counter("likesd_acks_received_total", "Acknowledgement messages received from peers.", func(s cluster.Stats) uint64 { return s.AcksReceived })
	counter("likesd_acks_refused_total", "Acknowledgements that came through memberlist in the name of a peer that acknowledges on its session: not its, so not counted.", func(s cluster.Stats) uint64 { return s.AcksRefused })
	counter("likesd_ack_errors_total", "Acknowledgements that could not be sent or were dropped.", func(s cluster.Stats) uint64 { return s.AckErrors })
	counter("likesd_breaker_skipped_total", "Fast-path frames not queued to a peer because its breaker was open (left to repair).", func(s cluster.Stats) uint64 { return s.BreakerSkipped })
	counter("likesd_breaker_opened_total", "Times a peer's circuit breaker opened.", func(s cluster.Stats) uint64 { return s.BreakerOpened })
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "likesd_peer_likes_refused_total",
		Help: "Likes from peers (fast path or anti-entropy) refused, not merged: their ids break the rule the API checks clients' by.",
	}, func() float64 { return float64(c.PeerLikesRefused()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "likesd_peer_likes_deferred_total",
		Help: "Likes from peers (fast path or anti-entropy) not applied nor acknowledged: memory was past its hard mark (--memory-peers-refuse-at); their senders keep them for anti-entropy.",
	}, func() float64 { return float64(c.PeerLikesDeferred()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_writes_waiting", Help: "Writes waiting for acknowledgements now.",
	}, func() float64 { return float64(c.Stats().WritesWaiting) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_gossip_queue_frames", Help: "Frames waiting in memberlist's broadcast queue (gossip fast path; 0 with direct).",
	}, func() float64 { return float64(c.QueuedFrames()) }))
	reg.MustRegister(&membersCollector{c: c, desc: prometheus.NewDesc("likesd_members",
		"Cluster members this node knows, by state.", []string{"state"}, nil),
		breaker: prometheus.NewDesc("likesd_peer_breaker",
			"1 for the state each member's circuit breaker is in (closed, open, half-open), 0 for the others.", []string{"peer", "state"}, nil)})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_ready", Help: "1 once this node holds what the cluster held when it joined (a full sync, or proof it is alone).",
	}, func() float64 {
		if c.Ready() {
			return 1
		}
		return 0
	}))
	return m
}

// Budget is what the metrics read from the memory budget at scrape time.
type Budget interface {
	Over() bool
	Full() bool
	Used() int64
	Limit() int64
	Mark() int64
	HardMark() int64
}

// WatchBudget registers the memory budget's gauges. Call it once.
func (m *Metrics) WatchBudget(b Budget) {
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("likesd_memory_budget_over", "1 while this node is over its memory budget and refuses new likes (507).", func() float64 {
		if b.Over() {
			return 1
		}
		return 0
	})
	gauge("likesd_memory_budget_used_bytes", "Memory the Go runtime holds from the OS, as the budget last sampled it.", func() float64 { return float64(b.Used()) })
	gauge("likesd_memory_budget_limit_bytes", "The memory limit the budget is a share of (the container's, or --memory-limit).", func() float64 { return float64(b.Limit()) })
	gauge("likesd_memory_budget_refuse_bytes", "Usage past which new likes are refused (--memory-refuse-at of the limit).", func() float64 { return float64(b.Mark()) })
	gauge("likesd_memory_budget_full", "1 while this node is past its hard mark and takes no likes from peers either (they wait with their senders).", func() float64 {
		if b.Full() {
			return 1
		}
		return 0
	})
	gauge("likesd_memory_budget_peers_refuse_bytes", "Usage past which likes from peers are not applied (--memory-peers-refuse-at of the limit).", func() float64 { return float64(b.HardMark()) })
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest records one HTTP request (api.Observer). The API passes
// labels from closed sets; a method outside the ones it serves is still
// counted as other here, so no caller can grow the series.
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST":
	default:
		method = "other"
	}
	m.requests.WithLabelValues(route, method, codeClass(status)).Observe(d.Seconds())
}

// ObserveLike records a like's outcome (api.Observer).
func (m *Metrics) ObserveLike(added bool) {
	if added {
		m.likesNew.Inc()
	} else {
		m.likesDuplicate.Inc()
	}
}

// ObserveRefused counts a request refused to protect the node
// (api.Observer).
func (m *Metrics) ObserveRefused(reason string) {
	if c, ok := m.refused[reason]; ok {
		c.Inc()
	}
}

func codeClass(status int) string {
	return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[min(max(status/100, 1), 5)-1]
}

type membersCollector struct {
	c             Cluster
	desc, breaker *prometheus.Desc
}

func (m *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc; ch <- m.breaker }

func (m *membersCollector) Collect(ch chan<- prometheus.Metric) {
	byState := map[string]int{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
	for _, x := range m.c.Members() {
		byState[x.State]++
		if x.Breaker == "" {
			continue // this node
		}
		for _, st := range []string{"closed", "open", "half-open"} {
			v := 0.0
			if st == x.Breaker {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.breaker, prometheus.GaugeValue, v, x.Name, st)
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(n), state)
	}
}

// Disk is what the metrics read from the data dir's log at scrape time.
type Disk interface {
	Stats() wal.Stats
}

// WatchDisk registers the log's metrics.
func (m *Metrics) WatchDisk(d Disk) {
	counter := func(name, help string, f func(wal.Stats) uint64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(d.Stats())) }))
	}
	counter("likesd_wal_records_total", "Likes appended to the data dir's log.", func(s wal.Stats) uint64 { return s.Appended })
	counter("likesd_wal_syncs_total", "fdatasyncs of the log (one covers every like appended while the previous ran).", func(s wal.Stats) uint64 { return s.Syncs })
	counter("likesd_wal_sync_errors_total", "Failed writes or syncs of the log: writes were refused (507) until the replica was written anew.", func(s wal.Stats) uint64 { return s.SyncErrors })
	counter("likesd_wal_bytes_total", "Bytes written to log segments.", func(s wal.Stats) uint64 { return s.BytesWritten })
	counter("likesd_wal_snapshots_total", "Snapshots written (after a failure too).", func(s wal.Stats) uint64 { return s.Snapshots })
	counter("likesd_wal_acks_dropped_total", "Peer acknowledgements dropped while more than 65,536 waited for a sync (their writes time out as 202 at their origin).", func(s wal.Stats) uint64 { return s.CallbacksDropped })
	counter("likesd_wal_snapshot_errors_total", "Snapshots that failed; the log is kept until one succeeds.", func(s wal.Stats) uint64 { return s.SnapshotErrors })
	gauge := func(name, help string, f func(wal.Stats) float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(d.Stats()) }))
	}
	gauge("likesd_wal_recovered_torn_tails", "Segments the recovery at start cut at a torn tail (a crash during a write).", func(s wal.Stats) float64 { return float64(s.RecoveredTornTails) })
	gauge("likesd_wal_recovered_set_aside", "Damaged files the recovery at start set aside (renamed *.corrupt-*).", func(s wal.Stats) float64 { return float64(s.RecoveredSetAside) })
	gauge("likesd_wal_recovered_incomplete", "1 when the recovery at start found damage: the node rebuilt (or rebuilds) from its peers before ready.", func(s wal.Stats) float64 {
		if s.RecoveredIncomplete {
			return 1
		}
		return 0
	})
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_wal_unwritable",
		Help: "1 while the data dir cannot take writes (disk full or failing, or a newer process owns it): writes answer 507.",
	}, func() float64 {
		if d.Stats().Unwritable {
			return 1
		}
		return 0
	}))
}
