//go:build faults

package faults

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/likesd/likesd/internal/lazyfs"
)

// The network: a bridge in a hub namespace this test owns (never in the
// root namespace, whose firewall — docker's, for one — may filter bridged
// traffic), one namespace per node with a veth on the bridge, and a veth
// from the root namespace for the client. Every name starts with
// lkf<pid>, so a later run can sweep what a killed run left behind.
//
//	root ns: lkf<pid>c 10.213.X.1 ──┐
//	hub ns:  br0 ───────────────────┼── lkf<pid>v<i> ── node ns lkf<pid>n<i>: eth0 10.213.X.(10+i)
//
// Faults are nftables rules in a node's own namespace, on its input only,
// and only against packets from other nodes: the client always gets
// through (see docs/faults.md).

const namePrefix = "lkf"

// netRig is the network of one test run.
type netRig struct {
	prefix string // lkf<pid>
	subnet string // first three octets, e.g. 10.213.57
	nodes  int

	changing sync.Mutex // one change of rules at a time

	mu sync.Mutex
	// rules is each node's wanted input filter; applied is the one known to
	// be in force. Index 0 is unused.
	rules, applied []inputRules
	// cutSince is when each cut-off node lost every peer; onCut receives the
	// span when it ends.
	cutSince map[int]time.Time
	onCut    func(node int, from, to time.Time)
	down     bool
}

// inputRules is what a node drops on input.
type inputRules struct {
	from map[int]bool // every packet from these nodes
	loss int          // percent of packets from any other node
}

func (ru inputRules) clone() inputRules {
	return inputRules{from: maps.Clone(ru.from), loss: ru.loss}
}

func newNetRig(nodes int) *netRig {
	pid := os.Getpid()
	r := &netRig{
		prefix:   fmt.Sprintf("%s%d", namePrefix, pid),
		subnet:   fmt.Sprintf("10.213.%d", 16+pid%224),
		nodes:    nodes,
		rules:    make([]inputRules, nodes+1),
		applied:  make([]inputRules, nodes+1),
		cutSince: map[int]time.Time{},
	}
	for i := range r.rules {
		r.rules[i].from = map[int]bool{}
		r.applied[i].from = map[int]bool{}
	}
	return r
}

func (r *netRig) hub() string           { return r.prefix + "h" }
func (r *netRig) ns(i int) string       { return fmt.Sprintf("%sn%d", r.prefix, i) }
func (r *netRig) ip(i int) string       { return fmt.Sprintf("%s.%d", r.subnet, 10+i) }
func (r *netRig) clientIP() string      { return r.subnet + ".1" }
func (r *netRig) clientLink() string    { return r.prefix + "c" }
func (r *netRig) nodeLink(i int) string { return fmt.Sprintf("%sv%d", r.prefix, i) }

// up creates the namespaces and links. On error, what was made is removed.
func (r *netRig) up() (err error) {
	defer func() {
		if err != nil {
			r.teardown()
		}
	}()
	// Another run (of another pid) may hold this subnet: take the next free.
	out, _ := run("ip", "-4", "-o", "addr")
	for k := 0; strings.Contains(out, " "+r.subnet+"."); k++ {
		if k == 224 {
			return errors.New("no free /24 among 10.213.16-239.0 on this host")
		}
		r.subnet = fmt.Sprintf("10.213.%d", 16+(os.Getpid()+k+1)%224)
	}
	hub := r.hub()
	steps := [][]string{
		{"ip", "netns", "add", hub},
		{"ip", "-n", hub, "link", "set", "lo", "up"},
		{"ip", "-n", hub, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", hub, "link", "set", "br0", "up"},
		{"ip", "link", "add", r.clientLink(), "type", "veth", "peer", "name", "c", "netns", hub},
		{"ip", "-n", hub, "link", "set", "c", "master", "br0", "up"},
		{"ip", "addr", "add", r.clientIP() + "/24", "dev", r.clientLink()},
		{"ip", "link", "set", r.clientLink(), "up"},
	}
	for i := 1; i <= r.nodes; i++ {
		ns, link := r.ns(i), r.nodeLink(i)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "link", "set", link, "netns", hub},
			[]string{"ip", "-n", hub, "link", "set", link, "master", "br0", "up"},
			[]string{"ip", "-n", ns, "addr", "add", r.ip(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if out, err := run(s...); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// teardown kills whatever still runs in the namespaces and removes them and
// the client link. Idempotent; safe from a signal handler's goroutine.
func (r *netRig) teardown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return
	}
	r.down = true
	names := []string{r.hub()}
	for i := 1; i <= r.nodes; i++ {
		names = append(names, r.ns(i))
	}
	removeNamespaces(names, []string{r.clientLink()})
}

func removeNamespaces(namespaces, links []string) {
	for _, ns := range namespaces {
		if out, err := run("ip", "netns", "pids", ns); err == nil {
			for _, f := range strings.Fields(out) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	for _, l := range links {
		_, _ = run("ip", "link", "del", l)
	}
	for _, ns := range namespaces {
		_, _ = run("ip", "netns", "del", ns)
	}
}

var staleName = regexp.MustCompile(`^` + namePrefix + `(\d+)(h|n\d+|c)$`)

// sweepStale removes namespaces and links that a run which is no longer
// alive left behind (killed by a timeout panic or SIGKILL). Runs of live
// processes are left alone.
func sweepStale() []string {
	dead := func(name string) bool {
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, _ := strconv.Atoi(m[1])
		return pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH
	}
	var nss, links []string
	out, _ := run("ip", "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && dead(f[0]) {
			nss = append(nss, f[0])
		}
	}
	out, _ = run("ip", "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if dead(name) {
			links = append(links, name)
		}
	}
	removeNamespaces(nss, links)
	return append(append(nss, links...), sweepMounts()...)
}

// sweepMounts detaches the node disks (lazyfs) that runs killed before
// their cleanup left mounted.
func sweepMounts() []string {
	raw, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var swept []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[2], "fuse") || !strings.Contains(f[1], "/likesd-faults-") {
			continue
		}
		if lazyfs.CleanupStale(f[1]) == nil {
			swept = append(swept, f[1])
		}
	}
	return swept
}

// block makes node at drop every packet from each of from.
func (r *netRig) block(at int, from ...int) error {
	return r.change(func() {
		for _, f := range from {
			r.rules[at].from[f] = true
		}
	}, at)
}

// isolate cuts node off from every other node, both ways.
func (r *netRig) isolate(node int) error {
	return r.change(func() {
		for j := 1; j <= r.nodes; j++ {
			if j != node {
				r.rules[node].from[j] = true
				r.rules[j].from[node] = true
			}
		}
	}, allNodes(r.nodes)...)
}

// partition cuts every node of a off from every node of b, both ways.
func (r *netRig) partition(a, b []int) error {
	return r.change(func() {
		for _, x := range a {
			for _, y := range b {
				r.rules[x].from[y] = true
				r.rules[y].from[x] = true
			}
		}
	}, allNodes(r.nodes)...)
}

// lose makes each node drop pct percent of packets from other nodes.
func (r *netRig) lose(pct int, nodes ...int) error {
	return r.change(func() {
		for _, n := range nodes {
			r.rules[n].loss = pct
		}
	}, nodes...)
}

// heal removes every rule.
func (r *netRig) heal() error {
	return r.change(func() {
		for i := range r.rules {
			r.rules[i] = inputRules{from: map[int]bool{}}
		}
	}, allNodes(r.nodes)...)
}

// change edits the wanted rules and applies them to nodes, in parallel so
// that a fault starts at about the same time on every node.
func (r *netRig) change(edit func(), nodes ...int) error {
	r.changing.Lock()
	defer r.changing.Unlock()
	r.mu.Lock()
	edit()
	want := make(map[int]inputRules, len(nodes))
	for _, n := range nodes {
		want[n] = r.rules[n].clone()
	}
	r.mu.Unlock()
	var (
		wg   sync.WaitGroup
		errs = make([]error, r.nodes+1)
	)
	for n, ru := range want {
		wg.Go(func() {
			errs[n] = r.apply(n, ru)
			if errs[n] == nil {
				r.mu.Lock()
				r.applied[n] = ru
				r.trackCutsLocked(time.Now())
				r.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// trackCutsLocked opens and closes cutoff spans from the rules in force.
func (r *netRig) trackCutsLocked(now time.Time) {
	for n := 1; n <= r.nodes; n++ {
		since, was := r.cutSince[n]
		switch is := r.cutOffLocked(n); {
		case is && !was:
			r.cutSince[n] = now
		case !is && was:
			delete(r.cutSince, n)
			if r.onCut != nil {
				r.onCut(n, since, now)
			}
		}
	}
}

// cutOffLocked: by the rules in force, no peer can exchange packets with n
// in both directions (TCP, the fast path's transport, needs both).
func (r *netRig) cutOffLocked(n int) bool {
	for j := 1; j <= r.nodes; j++ {
		if j != n && !r.applied[n].from[j] && !r.applied[j].from[n] {
			return false
		}
	}
	return true
}

// ruleset renders node n's filter. The table is created and deleted first
// so the whole replacement is one atomic nft transaction.
func (r *netRig) ruleset(ru inputRules) string {
	var b bytes.Buffer
	b.WriteString("table inet lkf\ndelete table inet lkf\n")
	if len(ru.from) == 0 && ru.loss == 0 {
		return b.String()
	}
	b.WriteString("table inet lkf {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n")
	if len(ru.from) > 0 {
		var ips []string
		for _, j := range sortedNodes(ru.from) {
			ips = append(ips, r.ip(j))
		}
		fmt.Fprintf(&b, "\t\tip saddr { %s } drop\n", strings.Join(ips, ", "))
	}
	if ru.loss > 0 {
		fmt.Fprintf(&b, "\t\tip saddr %s.0/24 ip saddr != %s numgen random mod 100 < %d drop\n", r.subnet, r.clientIP(), ru.loss)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func (r *netRig) apply(n int, ru inputRules) error {
	cmd := exec.Command("ip", "netns", "exec", r.ns(n), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(r.ruleset(ru))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("node %d: %v: %s", n, err, out)
	}
	return nil
}

// setOnCut sets who hears of cutoff spans as they end (nil: nobody).
func (r *netRig) setOnCut(f func(node int, from, to time.Time)) {
	r.mu.Lock()
	r.onCut = f
	r.mu.Unlock()
}

// closeCuts ends every open cutoff span now (at the end of a schedule).
func (r *netRig) closeCuts() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for n, since := range r.cutSince {
		if r.onCut != nil {
			r.onCut(n, since, now)
		}
		delete(r.cutSince, n)
	}
}

func allNodes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

func sortedNodes(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func run(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return string(out), err
}
