// Package metrics owns likesd's Prometheus exposition: it turns the series
// the other packages declare next to their counters (internal/stat:
// cluster.Metrics, wal.Metrics, membudget.Metrics) into collectors read at
// scrape time, keeps the series labelled by member (the member list), and
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
	"github.com/likesd/likesd/internal/membudget"
	"github.com/likesd/likesd/internal/stat"
	"github.com/likesd/likesd/internal/wal"
)

// Cluster is what the metrics read from the cluster at scrape time: the
// series the node declares (cluster.Metrics), and its members for the
// series labelled by member.
type Cluster interface {
	cluster.Readings
	Members() []cluster.Member
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

	reg.MustRegister(newDescCollector(cluster.Metrics(c)))
	reg.MustRegister(&membersCollector{c: c, desc: prometheus.NewDesc("likesd_members",
		"Cluster members this node knows, by state.", []string{"state"}, nil),
		breaker: prometheus.NewDesc("likesd_peer_breaker",
			"1 for the state each member's circuit breaker is in (closed, open, half-open), 0 for the others.", []string{"peer", "state"}, nil)})
	return m
}

// Budget is what the metrics read from the memory budget at scrape time.
type Budget interface{ membudget.Readings }

// WatchBudget registers the memory budget's gauges (membudget.Metrics).
// Call it once.
func (m *Metrics) WatchBudget(b Budget) {
	m.reg.MustRegister(newDescCollector(membudget.Metrics(b)))
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

// descCollector exposes series declared where their counters are kept,
// reading each at scrape time.
type descCollector struct {
	ds   []stat.Desc
	desc []*prometheus.Desc
}

func newDescCollector(ds []stat.Desc) *descCollector {
	c := &descCollector{ds: ds, desc: make([]*prometheus.Desc, len(ds))}
	for i, d := range ds {
		var labels prometheus.Labels
		if d.Label != "" {
			labels = prometheus.Labels{d.Label: d.Value}
		}
		c.desc[i] = prometheus.NewDesc(d.Name, d.Help, nil, labels)
	}
	return c
}

func (c *descCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.desc {
		ch <- d
	}
}

func (c *descCollector) Collect(ch chan<- prometheus.Metric) {
	for i, d := range c.ds {
		kind := prometheus.GaugeValue
		if d.Kind == stat.Counter {
			kind = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(c.desc[i], kind, d.Read())
	}
}

// membersCollector exposes the series labelled by member. Their labels stay
// bounded: state is a closed set of four, and peer names only the members
// this node lists (Cluster.Members), which is the cluster's size plus, for
// memberlist's GossipToTheDeadTime, the dead and left ones (a replaced
// process, a scaled-down node); with three breaker states each.
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

// WatchDisk registers the log's metrics (wal.Metrics).
func (m *Metrics) WatchDisk(d Disk) {
	m.reg.MustRegister(newDescCollector(wal.Metrics(d.Stats)))
}
