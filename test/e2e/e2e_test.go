//go:build e2e

// Package e2e runs likesd as containers: the compose topology (master +
// scalable workers, each on a volume of its own) on a private docker network
// this test creates, with scaling, a master restart, every container killed
// at once and a network partition. Run it with make e2e.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/client"
)

const image = "likesd:e2e"

var root = filepath.Join("..", "..")

type compose struct {
	project string
	env     []string
}

func (c *compose) run(args ...string) (string, error) {
	args = append([]string{"-p", c.project, "-f", filepath.Join(root, "deploy", "compose", "docker-compose.yml")}, args...)
	cmd := exec.Command("docker-compose", args...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *compose) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(args...)
	require.NoError(t, err, "docker-compose %v:\n%s", args, out)
	return out
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	require.NoError(t, err, "docker %v:\n%s", args, out)
	return strings.TrimSpace(string(out))
}

func (c *compose) network() string { return c.project + "_likes" }

// node is one container, reached at its address on the private network.
type node struct {
	id, name, ip string
	api          *client.Client
	admin        *client.Client // LIKESD_ADMIN_ADDR: /v1/cluster, probes, metrics
}

func (c *compose) nodes(t *testing.T, service string) []node {
	t.Helper()
	var out []node
	for _, id := range strings.Fields(c.must(t, "ps", "-q", service)) {
		name := strings.TrimPrefix(docker(t, "inspect", "-f", "{{.Name}}", id), "/")
		ip := docker(t, "inspect", "-f", `{{(index .NetworkSettings.Networks "`+c.network()+`").IPAddress}}`, id)
		out = append(out, node{id: id, name: name, ip: ip,
			api:   client.New("http://"+net.JoinHostPort(ip, "8080"), &http.Client{Timeout: 2 * time.Second}),
			admin: client.New("http://"+net.JoinHostPort(ip, "9090"), &http.Client{Timeout: 2 * time.Second})})
	}
	return out
}

func (c *compose) all(t *testing.T) []node {
	return append(c.nodes(t, "master"), c.nodes(t, "worker")...)
}

var ctx = context.Background()

// waitOneCluster waits until every node is ready and sees exactly the same n
// alive members: one cluster, no split brain.
func waitOneCluster(t *testing.T, n int, nodes []node) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var views [][]string
		for _, x := range nodes {
			cl, err := x.admin.Cluster(ctx)
			if !assert.NoError(c, err, x.name) {
				return
			}
			alive := cl.Alive()
			slices.Sort(alive)
			assert.Len(c, alive, n, "%s sees %v", x.name, alive)
			views = append(views, alive)
		}
		for _, v := range views[1:] {
			assert.Equal(c, views[0], v, "every node sees the same members")
		}
	}, 60*time.Second, 100*time.Millisecond)
}

func waitCounts(t *testing.T, want map[string]int, nodes []node) {
	t.Helper()
	posts := make([]string, 0, len(want))
	for p := range want {
		posts = append(posts, p)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, x := range nodes {
			got, err := x.api.Counts(ctx, posts...)
			if assert.NoError(c, err, x.name) {
				assert.Equal(c, want, got, x.name)
			}
		}
	}, 60*time.Second, 100*time.Millisecond)
}

func like(t *testing.T, x node, post string, users ...string) {
	t.Helper()
	for _, u := range users {
		_, _, err := x.api.Like(ctx, post, u)
		require.NoError(t, err, "like through %s", x.name)
	}
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// recovered is what a container read back from its data dir at its last
// start: the likes of the last "recovered the data dir" line in its log.
func recovered(t *testing.T, id string) int {
	t.Helper()
	n := -1
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		out, err := exec.Command("docker", "logs", id).CombinedOutput()
		if !assert.NoError(c, err) {
			return
		}
		for _, line := range strings.Split(string(out), "\n") {
			var e struct {
				Message       string `json:"message"`
				Records       int    `json:"records"`
				SnapshotLikes int    `json:"snapshot_likes"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Message == "recovered the data dir" {
				n = e.Records + e.SnapshotLikes
			}
		}
		assert.GreaterOrEqual(c, n, 0, "no \"recovered the data dir\" in the log of %s", id)
	}, 30*time.Second, 100*time.Millisecond)
	return n
}

// sameKey reads every node's /admin/keyring: gossip is encrypted, with one
// key, the same everywhere; it returns that key's fingerprint.
func sameKey(t *testing.T, nodes []node) string {
	t.Helper()
	var primary string
	for _, x := range nodes {
		var got struct {
			Encrypted bool     `json:"encrypted"`
			Primary   string   `json:"primary"`
			Keys      []string `json:"keys"`
		}
		resp, err := http.Get("http://" + net.JoinHostPort(x.ip, "9090") + "/admin/keyring")
		require.NoError(t, err, x.name)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got), x.name)
		resp.Body.Close()
		require.True(t, got.Encrypted, "%s: gossip encrypted", x.name)
		require.Equal(t, []string{got.Primary}, got.Keys, x.name)
		if primary == "" {
			primary = got.Primary
		}
		require.Equal(t, primary, got.Primary, "%s: the same key as the others", x.name)
	}
	return primary
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// up builds the image and starts master + 3 workers on a subnet of their
// own, retrying another subnet if the first overlaps an existing network.
func up(t *testing.T) *compose {
	out, err := exec.Command("make", "-C", root, "image", "IMAGE="+image).CombinedOutput()
	require.NoError(t, err, "building the image with docker build:\n%s", out)

	c := &compose{project: fmt.Sprintf("likesde2e%d", os.Getpid())}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := c.run("logs", "--no-color", "--tail", "60")
			t.Logf("--- container logs\n%s", logs)
		}
		out, err := c.run("down", "-v", "--remove-orphans", "-t", "3")
		assert.NoError(t, err, "removing containers and network:\n%s", out)
	})
	for attempt := 0; ; attempt++ {
		c.env = []string{
			"LIKESD_IMAGE=" + image,
			fmt.Sprintf("LIKESD_SUBNET=172.29.%d.0/24", 1+rand.IntN(250)),
			fmt.Sprintf("LIKESD_MASTER_PORT=%d", freePort(t)),
			"LIKESD_PUSH_PULL_INTERVAL=1s", "LIKESD_GOSSIP_INTERVAL=50ms",
			"LIKESD_PROBE_INTERVAL=300ms", "LIKESD_PROBE_TIMEOUT=150ms", "LIKESD_REJOIN_INTERVAL=500ms",
		}
		out, err := c.run("up", "-d", "--scale", "worker=3")
		if err == nil {
			break
		}
		require.Less(t, attempt, 5, "docker-compose up:\n%s", out)
		_, _ = c.run("down", "-v", "--remove-orphans", "-t", "1")
	}
	return c
}

func TestComposeTopology(t *testing.T) {
	start := time.Now()
	c := up(t)
	waitOneCluster(t, 4, c.all(t))
	t.Logf("master + 3 workers formed one cluster in %v", time.Since(start).Round(time.Millisecond))
	// The key keygen made on the first up: one, the same on every node.
	key := sameKey(t, c.all(t))

	// Likes through different containers converge on all of them; a user
	// retried through several containers counts once.
	nodes := c.all(t)
	for i, x := range nodes {
		like(t, x, "p1", users(x.name, 25)...)
		like(t, x, "p2", "same-user")
		like(t, x, fmt.Sprintf("own-%d", i), "u")
	}
	want := map[string]int{"p1": 25 * len(nodes), "p2": 1}
	for i := range nodes {
		want[fmt.Sprintf("own-%d", i)] = 1
	}
	waitCounts(t, want, nodes)

	t.Run("scale workers 3 to 5: new ones receive every like", func(t *testing.T) {
		c.must(t, "up", "-d", "--no-recreate", "--scale", "worker=5")
		nodes := c.all(t)
		require.Len(t, nodes, 6)
		waitOneCluster(t, 6, nodes)
		waitCounts(t, want, nodes)
	})

	t.Run("master killed and recreated on its volume: one cluster, caught up", func(t *testing.T) {
		old := c.nodes(t, "master")[0]
		oldCluster, err := old.admin.Cluster(ctx)
		require.NoError(t, err)
		c.must(t, "kill", "master")
		c.must(t, "rm", "-f", "master")
		like(t, c.nodes(t, "worker")[0], "while-master-down", users("w", 10)...)
		want["while-master-down"] = 10

		c.must(t, "up", "-d", "--no-deps", "master")
		fresh := c.nodes(t, "master")[0]
		freshCluster, err := fresh.admin.Cluster(ctx)
		require.NoError(t, err)
		assert.NotEqual(t, oldCluster.Self, freshCluster.Self, "the master has a new identity")
		assert.Positive(t, recovered(t, fresh.id), "the new master container read the likes back from the master's volume")

		nodes := c.all(t)
		waitOneCluster(t, 6, nodes)
		for _, x := range nodes {
			cl, err := x.admin.Cluster(ctx)
			require.NoError(t, err)
			assert.Contains(t, cl.Alive(), freshCluster.Self, "%s sees the new master", x.name)
			assert.NotContains(t, cl.Alive(), oldCluster.Self, "%s forgot the old master", x.name)
		}
		waitCounts(t, want, nodes)
	})

	// Before the partition: the cut worker comes back with a fixed address,
	// which a container started later could otherwise take.
	t.Run("every container killed at once (kill -9) and started again: every like is back", func(t *testing.T) {
		c.must(t, "kill", "-s", "SIGKILL")
		c.must(t, "start")
		nodes := c.all(t)
		require.Len(t, nodes, 6)
		waitOneCluster(t, 6, nodes)
		for _, x := range nodes {
			assert.Positive(t, recovered(t, x.id), "%s read its likes back from its volume", x.name)
		}
		waitCounts(t, want, nodes)
		assert.Equal(t, key, sameKey(t, nodes), "keygen ran again and kept the key")
	})

	t.Run("worker cut off by network disconnect converges after reconnect", func(t *testing.T) {
		everyone := c.all(t)
		cut := c.nodes(t, "worker")[1]
		var others []node
		for _, x := range everyone {
			if x.id != cut.id {
				others = append(others, x)
			}
		}
		docker(t, "network", "disconnect", c.network(), cut.id)
		waitOneCluster(t, 5, others)
		like(t, others[0], "during-cut", users("a", 20)...)
		like(t, others[3], "during-cut", users("b", 20)...)
		want["during-cut"] = 40
		waitCounts(t, want, others)

		docker(t, "network", "connect", "--ip", cut.ip, c.network(), cut.id)
		waitOneCluster(t, 6, everyone)
		waitCounts(t, want, everyone)
	})
	t.Logf("end-to-end run took %v", time.Since(start).Round(time.Millisecond))
}
