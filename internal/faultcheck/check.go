package faultcheck

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"
)

// Like is one (post, user) pair: what the cluster must never lose.
type Like struct{ Post, User string }

func (l Like) String() string { return l.Post + "/" + l.User }

// Life names one process lifetime of a node: its Gen-th start, from 0.
type Life struct{ Node, Gen int }

func (l Life) String() string { return fmt.Sprintf("n%d#%d", l.Node, l.Gen) }

// Ack is one reply the client took as an acknowledgement: 201 (new), 200
// (already held) or 202 (stored, not yet replicated).
type Ack struct {
	Like
	// Life is the process that answered. The rig records the life that was
	// running when the request started; that is exact as long as a killed
	// node stays down longer than the client's request timeout.
	Life   Life
	Status int
	At     time.Time // when the reply arrived
}

// End is how a process life ended.
type End struct {
	Life Life
	At   time.Time // when the signal was sent
	Kill bool      // SIGKILL; false for a graceful stop (SIGTERM)
	// Crash: nobody signalled it; it exited by itself (At is when the rig
	// saw the exit). Always a failure.
	Crash bool
}

// Cutoff is a span during which a node could reach none of its peers (the
// client could still reach it).
type Cutoff struct {
	Node     int
	From, To time.Time
}

// CountSample is one count the client read from a process.
type CountSample struct {
	Life  Life
	Post  string
	Count int
	At    time.Time // when the reply arrived; samples of one life are sequential
}

// History is everything one run recorded.
type History struct {
	Start   time.Time // for relative times in examples
	Sent    []Like    // every like the client attempted, acknowledged or not
	Acks    []Ack
	Ends    []End
	Cutoffs []Cutoff
	Counts  []CountSample
	// Final is what every node held once the run was over (node → post →
	// users), read after the heal: at convergence, or at the timeout.
	Final map[int]map[string][]string
	// Healed is when the last fault was healed and the load had stopped;
	// Converged when every node first held identical content (zero: never,
	// within the rig's timeout).
	Healed, Converged time.Time
}

// Config tunes the judgement.
type Config struct {
	// AsyncWindow is how long after its acknowledgement a like may still be
	// only on the acknowledging node: a kill -9 within it may lose the like
	// without failing the run (unless strict). likesd batches for its flush
	// interval (10 ms); the rest is scheduling slack on a busy machine.
	AsyncWindow time.Duration
}

// DefaultConfig is what `make faults` uses.
func DefaultConfig() Config { return Config{AsyncWindow: 250 * time.Millisecond} }

// maxExamples bounds the examples kept per kind of finding.
const maxExamples = 5

// Report is the verdict on one run.
type Report struct {
	Sent        int // distinct likes attempted
	Acked       int // distinct likes acknowledged with 200 or 201
	Accepted202 int // distinct likes answered only with 202

	Lost       int // acknowledged, on no node, and no kill explains it
	LostAsync  int // acknowledged only by nodes killed within the async window
	LostCutoff int // acknowledged only by nodes cut off from every peer until killed
	Lost202    int // answered only 202, by nodes killed since: expected
	// AckToKill holds, per async loss, the longest time from an
	// acknowledgement of the like to the kill of the node that sent it.
	AckToKill []time.Duration

	Phantoms      int // on some node, never sent
	DivergedPosts int // posts whose likers differ between nodes at the end
	DivergedLikes int // over those posts: likes on some node but not all
	Decreases     int // count reads lower than an earlier read of the same process
	Crashes       int // process lives that ended by themselves

	Converged bool
	Heal      time.Duration // Healed → Converged, when Converged

	// LostBy counts real losses by the process that acknowledged them (the
	// first acknowledgement): where to look in the logs.
	LostBy map[Life]int

	Examples []string // a few concrete findings of each kind, for the log
}

// Check judges h.
func Check(h History, cfg Config) Report {
	r := judge{Report: &Report{}, examples: map[string]int{}}
	sent := make(map[Like]bool, len(h.Sent))
	for _, l := range h.Sent {
		sent[l] = true
	}
	r.Sent = len(sent)

	union, phantoms := r.checkFinal(h, sent)
	r.Phantoms = phantoms
	r.checkLoss(h, cfg, union)
	r.checkCounts(h)
	for _, e := range h.Ends {
		if e.Crash {
			r.Crashes++
			r.example("crash", "%s exited by itself at %s", e.Life, rel(h.Start, e.At))
		}
	}
	if !h.Converged.IsZero() {
		r.Converged = true
		r.Heal = max(h.Converged.Sub(h.Healed), 0)
	}
	return *r.Report
}

// checkFinal compares the nodes' final sets: divergence and phantoms. It
// returns every like held by some node.
func (r *judge) checkFinal(h History, sent map[Like]bool) (map[Like]bool, int) {
	nodes := make([]int, 0, len(h.Final))
	posts := map[string]bool{}
	for n, byPost := range h.Final {
		nodes = append(nodes, n)
		for p := range byPost {
			posts[p] = true
		}
	}
	slices.Sort(nodes)
	union := map[Like]bool{}
	phantoms := 0
	for _, p := range sortedKeys(posts) {
		holders := map[string]int{} // user → nodes holding it
		for _, n := range nodes {
			seen := map[string]bool{} // a node listing a user twice holds it once
			for _, u := range h.Final[n][p] {
				if !seen[u] {
					seen[u] = true
					holders[u]++
				}
			}
		}
		diverged := false
		for _, u := range sortedKeys(holders) {
			l, k := Like{p, u}, holders[u]
			union[l] = true
			if !sent[l] {
				phantoms++
				r.example("phantom", "phantom %s on %d node(s)", l, k)
			}
			if k < len(nodes) {
				r.DivergedLikes++
				diverged = true
			}
		}
		if diverged {
			r.DivergedPosts++
			sizes := ""
			for _, n := range nodes {
				sizes += fmt.Sprintf(" n%d=%d", n, len(h.Final[n][p]))
			}
			r.example("diverged", "diverged %s:%s", p, sizes)
		}
	}
	return union, phantoms
}

// cause is why an acknowledged like that is on no node was lost, from the
// best excuse to none.
type cause int

const (
	causeAsync cause = iota
	causeCutoff
	causeReal
)

func (r *judge) checkLoss(h History, cfg Config, union map[Like]bool) {
	ends := make(map[Life]End, len(h.Ends))
	for _, e := range h.Ends {
		ends[e.Life] = e
	}
	cut := cutoffsByNode(h.Cutoffs)

	acks := map[Like][]Ack{}
	var order []Like
	for _, a := range h.Acks {
		if a.Status != http.StatusOK && a.Status != http.StatusCreated && a.Status != http.StatusAccepted {
			continue
		}
		if _, ok := acks[a.Like]; !ok {
			order = append(order, a.Like)
		}
		acks[a.Like] = append(acks[a.Like], a)
	}
	for _, l := range order {
		as := acks[l]
		only202 := !slices.ContainsFunc(as, func(a Ack) bool { return a.Status != http.StatusAccepted })
		if only202 {
			r.Accepted202++
		} else {
			r.Acked++
		}
		if union[l] {
			continue
		}
		// The like is lost; the weakest excuse among its acks decides.
		worst, longest := causeAsync, time.Duration(0)
		for _, a := range as {
			c, d := lossCause(a, ends, cut[a.Life.Node], cfg.AsyncWindow, only202)
			worst = max(worst, c)
			longest = max(longest, d)
		}
		switch {
		case worst == causeReal:
			r.Lost++
			if r.LostBy == nil {
				r.LostBy = map[Life]int{}
			}
			r.LostBy[as[0].Life]++
			r.example("lost", "lost %s: %s", l, describeAcks(h.Start, as, ends))
		case only202:
			r.Lost202++
		case worst == causeAsync:
			r.LostAsync++
			r.AckToKill = append(r.AckToKill, longest)
		default:
			r.LostCutoff++
		}
	}
}

// lossCause explains the loss of a like that a acknowledged.
func lossCause(a Ack, ends map[Life]End, cut []Cutoff, window time.Duration, only202 bool) (cause, time.Duration) {
	e, ended := ends[a.Life]
	if !ended || !e.Kill {
		return causeReal, 0 // the process lived on, or stopped gracefully
	}
	d := max(e.At.Sub(a.At), 0)
	switch {
	case only202: // not replicated when answered: any later kill may lose it
		return causeAsync, d
	case d <= window:
		return causeAsync, d
	case covered(cut, a.At.Add(window), e.At):
		return causeCutoff, d
	}
	return causeReal, d
}

func describeAcks(start time.Time, as []Ack, ends map[Life]End) string {
	s := ""
	for i, a := range as {
		if i > 0 {
			s += "; "
		}
		s += fmt.Sprintf("%d by %s at %s", a.Status, a.Life, rel(start, a.At))
		if e, ok := ends[a.Life]; ok {
			how := "SIGTERM"
			if e.Kill {
				how = "kill -9"
			}
			s += fmt.Sprintf(" (%s at %s)", how, rel(start, e.At))
		} else {
			s += " (still running)"
		}
	}
	return s
}

// cutoffsByNode merges each node's cutoffs into sorted disjoint spans.
func cutoffsByNode(cs []Cutoff) map[int][]Cutoff {
	out := map[int][]Cutoff{}
	for _, c := range cs {
		out[c.Node] = append(out[c.Node], c)
	}
	for n, spans := range out {
		sort.Slice(spans, func(i, j int) bool { return spans[i].From.Before(spans[j].From) })
		merged := spans[:1]
		for _, c := range spans[1:] {
			last := &merged[len(merged)-1]
			if !c.From.After(last.To) {
				if c.To.After(last.To) {
					last.To = c.To
				}
				continue
			}
			merged = append(merged, c)
		}
		out[n] = merged
	}
	return out
}

// covered reports whether the merged spans cover [from, to].
func covered(spans []Cutoff, from, to time.Time) bool {
	if !from.Before(to) {
		from = to
	}
	for _, c := range spans {
		if !c.From.After(from) && !c.To.Before(to) {
			return true
		}
	}
	return false
}

// checkCounts finds reads lower than an earlier read of the same process.
func (r *judge) checkCounts(h History) {
	type key struct {
		life Life
		post string
	}
	series := map[key][]CountSample{}
	for _, s := range h.Counts {
		k := key{s.Life, s.Post}
		series[k] = append(series[k], s)
	}
	for k, ss := range series {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].At.Before(ss[j].At) })
		high := ss[0]
		for _, s := range ss[1:] {
			if s.Count < high.Count {
				r.Decreases++
				r.example("decrease", "count of %s on %s went %d → %d (%s → %s)", k.post, k.life, high.Count, s.Count,
					rel(h.Start, high.At), rel(h.Start, s.At))
				continue
			}
			high = s
		}
	}
}

// Failures lists why the run fails; none means it passes. Strict also fails
// on async and cutoff losses.
func (r Report) Failures(strict bool) []string {
	var out []string
	add := func(n int, what string) {
		if n > 0 {
			out = append(out, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Lost, "acknowledged likes lost")
	if strict {
		add(r.LostAsync, "acknowledged likes lost in the async window (strict)")
		add(r.LostCutoff, "acknowledged likes lost while cut off (strict)")
	}
	add(r.Phantoms, "phantom likes")
	add(r.DivergedPosts, "posts diverged")
	add(r.Decreases, "count decreases")
	add(r.Crashes, "processes exited by themselves")
	if !r.Converged && r.DivergedPosts == 0 {
		out = append(out, "never converged")
	}
	return out
}

// Line is the per-run line.
func (r Report) Line() string {
	heal := "never"
	if r.Converged {
		heal = fmtDur(r.Heal)
	}
	return fmt.Sprintf("acked=%d lost=%d lost_async=%d%s lost_cutoff=%d accepted202=%d lost202=%d phantoms=%d diverged=%d (likes=%d) decreases=%d crashes=%d heal=%s",
		r.Acked, r.Lost, r.LostAsync, ackToKill(r.AckToKill), r.LostCutoff, r.Accepted202, r.Lost202,
		r.Phantoms, r.DivergedPosts, r.DivergedLikes, r.Decreases, r.Crashes, heal)
}

// judge is a Report being written.
type judge struct {
	*Report
	examples map[string]int // kept per kind of finding
}

func (r *judge) example(kind, format string, args ...any) {
	if r.examples[kind] < maxExamples {
		r.examples[kind]++
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// Summary adds up the reports of many runs.
type Summary struct {
	Strict   bool
	total    Report
	runs     int
	failed   []string // names of failed runs
	heals    []time.Duration
	unconv   int
	unjudged int
	ackKill  []time.Duration
}

// Add counts one run, named for replay (e.g. its seed), and returns its
// failures.
func (s *Summary) Add(name string, r Report) []string {
	s.runs++
	t := &s.total
	t.Sent += r.Sent
	t.Acked += r.Acked
	t.Accepted202 += r.Accepted202
	t.Lost += r.Lost
	t.LostAsync += r.LostAsync
	t.LostCutoff += r.LostCutoff
	t.Lost202 += r.Lost202
	t.Phantoms += r.Phantoms
	t.DivergedPosts += r.DivergedPosts
	t.DivergedLikes += r.DivergedLikes
	t.Decreases += r.Decreases
	t.Crashes += r.Crashes
	s.ackKill = append(s.ackKill, r.AckToKill...)
	if r.Converged {
		s.heals = append(s.heals, r.Heal)
	} else {
		s.unconv++
	}
	f := r.Failures(s.Strict)
	if len(f) > 0 {
		s.failed = append(s.failed, name)
	}
	return f
}

// AddUnjudged counts a run that did not get to the verdict (its rig
// failed: a node never became ready, say) as failed.
func (s *Summary) AddUnjudged(name string) {
	s.runs++
	s.unjudged++
	s.failed = append(s.failed, name)
}

// Failed names the failed runs, in the order added.
func (s *Summary) Failed() []string { return slices.Clone(s.failed) }

// Line is the one summary line.
func (s *Summary) Line() string {
	t := s.total
	heal := "n/a"
	if len(s.heals) > 0 {
		heal = fmt.Sprintf("p50=%s max=%s", fmtDur(quantile(s.heals, 0.5)), fmtDur(quantile(s.heals, 1)))
	}
	line := fmt.Sprintf("faults: schedules=%d failed=%d acked=%d lost=%d lost_async=%d%s lost_cutoff=%d accepted202=%d lost202=%d phantoms=%d diverged=%d (likes=%d) decreases=%d crashes=%d heal %s unconverged=%d",
		s.runs, len(s.failed), t.Acked, t.Lost, t.LostAsync, ackToKill(s.ackKill), t.LostCutoff, t.Accepted202, t.Lost202,
		t.Phantoms, t.DivergedPosts, t.DivergedLikes, t.Decreases, t.Crashes, heal, s.unconv)
	if s.unjudged > 0 {
		line += fmt.Sprintf(" unjudged=%d", s.unjudged)
	}
	if s.Strict {
		line += " strict"
	}
	return line
}

func ackToKill(ds []time.Duration) string {
	if len(ds) == 0 {
		return ""
	}
	return fmt.Sprintf(" (ack→kill p50 %s max %s)", fmtDur(quantile(ds, 0.5)), fmtDur(quantile(ds, 1)))
}

// quantile is the nearest-rank q-quantile of ds (not empty).
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

func rel(start, t time.Time) string {
	if start.IsZero() {
		return t.Format("15:04:05.000")
	}
	return "+" + t.Sub(start).Round(time.Millisecond).String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
