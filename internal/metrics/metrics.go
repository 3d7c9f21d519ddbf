// Package metrics owns likesd's Prometheus metrics: it reads the counters the
// other packages keep (cluster.Stats, the member list) at scrape time and
// implements the API's Observer for request latencies and like outcomes. It
// is the only package that imports the Prometheus client.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/likesd/likesd/internal/cluster"
)

// Cluster is what the metrics read from the cluster at scrape time.
type Cluster interface {
	Stats() cluster.Stats
	QueuedFrames() int
	Members() []cluster.Member
	// Behind is, per origin, how many likes peers have seen that this node
	// has not yet.
	Behind() map[uint64]uint64
}

// Metrics holds the registry and the collectors the API feeds.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.HistogramVec
	// The two like outcomes, resolved once: ObserveLike is on every like's path.
	likesNew, likesDuplicate prometheus.Counter
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
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, likes)

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
	counter("likesd_log_overrun_total", "Likes that left the log before the fast path framed them (healed by snapshot).", func(s cluster.Stats) uint64 { return s.LogOverrun })
	counter("likesd_inbox_dropped_total", "Received messages dropped because the inbox was full.", func(s cluster.Stats) uint64 { return s.InboxDropped })
	counter("likesd_repair_dropped_total", "Repair work dropped because its queue was full (asked again at the next push/pull).", func(s cluster.Stats) uint64 { return s.RepairDropped })
	counter("likesd_queue_pruned_total", "Frames pruned from the broadcast queue at its limit.", func(s cluster.Stats) uint64 { return s.FramesPruned })
	counter("likesd_decode_errors_total", "Frames or states that failed to decode.", func(s cluster.Stats) uint64 { return s.DecodeErrors })
	counter("likesd_pushpull_total", "Anti-entropy (push/pull) version vectors merged.", func(s cluster.Stats) uint64 { return s.PushPullMerges })
	counter("likesd_pushpull_bytes_total", "Bytes of push/pull states received.", func(s cluster.Stats) uint64 { return s.PushPullBytes })
	counter("likesd_direct_batches_sent_total", "Batches sent straight to a peer (direct fast path).", func(s cluster.Stats) uint64 { return s.DirectSent })
	counter("likesd_direct_errors_total", "Batches that could not be sent to a peer.", func(s cluster.Stats) uint64 { return s.DirectErrors })
	counter("likesd_peer_queue_dropped_total", "Batches dropped from a full peer queue (left to repair).", func(s cluster.Stats) uint64 { return s.PeerDropped })
	counter("likesd_repair_range_requests_total", "Ranges of likes this node asked an origin for.", func(s cluster.Stats) uint64 { return s.RangeRequests })
	counter("likesd_repair_ranges_served_total", "Ranges this node served from its log.", func(s cluster.Stats) uint64 { return s.RangesServed })
	counter("likesd_repair_bytes_received_total", "Bytes of range frames and snapshot chunks received.", func(s cluster.Stats) uint64 { return s.RepairBytesIn })
	counter("likesd_repair_bytes_sent_total", "Bytes of range frames and snapshot chunks sent.", func(s cluster.Stats) uint64 { return s.RepairBytesOut })
	counter("likesd_repair_likes_applied_total", "Likes new here that came by range or snapshot.", func(s cluster.Stats) uint64 { return s.RepairApplied })
	counter("likesd_snapshots_requested_total", "Snapshots this node asked for.", func(s cluster.Stats) uint64 { return s.SnapshotsAsked })
	counter("likesd_snapshots_served_total", "Snapshots this node streamed to a peer.", func(s cluster.Stats) uint64 { return s.SnapshotsServed })
	counter("likesd_snapshots_applied_total", "Snapshots received whole and applied.", func(s cluster.Stats) uint64 { return s.SnapshotsDone })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "likesd_gossip_queue_frames", Help: "Frames waiting in memberlist's broadcast queue (gossip fast path; 0 with direct).",
	}, func() float64 { return float64(c.QueuedFrames()) }))
	reg.MustRegister(&membersCollector{c: c, desc: prometheus.NewDesc("likesd_members",
		"Cluster members this node knows, by state.", []string{"state"}, nil)})
	reg.MustRegister(&behindCollector{c: c, desc: prometheus.NewDesc("likesd_replication_behind_likes",
		"Replication lag per origin: likes a peer's version vector shows that this node has not seen yet. Only origins this node is behind on have a series: none at all when caught up.",
		[]string{"origin"}, nil)})
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest records one HTTP request (api.Observer).
func (m *Metrics) ObserveRequest(route, method string, status int, d time.Duration) {
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

func codeClass(status int) string {
	return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[min(max(status/100, 1), 5)-1]
}

type membersCollector struct {
	c    Cluster
	desc *prometheus.Desc
}

func (m *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

func (m *membersCollector) Collect(ch chan<- prometheus.Metric) {
	byState := map[string]int{"alive": 0, "suspect": 0}
	for _, x := range m.c.Members() {
		byState[x.State]++
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(n), state)
	}
}

type behindCollector struct {
	c    Cluster
	desc *prometheus.Desc
}

func (b *behindCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b *behindCollector) Collect(ch chan<- prometheus.Metric) {
	for origin, n := range b.c.Behind() {
		ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, float64(n), strconv.FormatUint(origin, 16))
	}
}
