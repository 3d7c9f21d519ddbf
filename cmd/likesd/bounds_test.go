package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/breaker"
	"github.com/likesd/likesd/internal/cluster"
	"github.com/likesd/likesd/internal/link"
)

// bound is one numeric cluster flag: the values at and just past its
// bounds, as typed, and the field it sets, as printed.
type bound struct {
	flag         string
	min, max     string // max "": no upper bound worth a test
	below, above string // above "": no upper bound
	got          func(o options) string
	// minRefusedBy is set where a rule across flags, not the flag's own
	// bound, refuses its minimum: that rule's words.
	minRefusedBy string
}

func intBound(flag string, min, max int, got func(o options) string) bound {
	b := bound{flag: flag, min: strconv.Itoa(min), max: strconv.Itoa(max), below: strconv.Itoa(min - 1), got: got}
	if max != maxInt {
		b.above = strconv.Itoa(max + 1)
	}
	return b
}

// durationBound: max 0 is no upper bound.
func durationBound(flag string, min, max time.Duration, got func(o options) string) bound {
	b := bound{flag: flag, min: min.String(), below: (min - 1).String(), got: got}
	if max != 0 {
		b.max, b.above = max.String(), (max + 1).String()
	}
	return b
}

func clusterBounds() []bound {
	c := func(f func(c cluster.Config) any) func(o options) string {
		return func(o options) string { return fmt.Sprint(f(o.cluster)) }
	}
	probeInterval := durationBound("probe-interval", cluster.MinInterval, 0, c(func(c cluster.Config) any { return c.ProbeInterval }))
	probeInterval.minRefusedBy = "--probe-timeout 500ms must be shorter than --probe-interval 1ns"
	return []bound{
		durationBound("push-pull-interval", cluster.MinInterval, 0, c(func(c cluster.Config) any { return c.PushPullInterval })),
		durationBound("gossip-interval", cluster.MinInterval, 0, c(func(c cluster.Config) any { return c.GossipInterval })),
		probeInterval,
		durationBound("probe-timeout", cluster.MinInterval, 0, c(func(c cluster.Config) any { return c.ProbeTimeout })),
		durationBound("rejoin-interval", cluster.MinInterval, 0, c(func(c cluster.Config) any { return c.RejoinInterval })),
		durationBound("flush-interval", cluster.MinInterval, 0, c(func(c cluster.Config) any { return c.FlushInterval })),
		intBound("packet-size", cluster.MinPacketSize, cluster.MaxPacketSize, c(func(c cluster.Config) any { return c.PacketSize })),
		intBound("direct-batch-bytes", link.MinBatchBytes, maxInt, c(func(c cluster.Config) any { return c.DirectBatchBytes })),
		intBound("peer-queue", link.MinQueue, maxInt, c(func(c cluster.Config) any { return c.PeerQueue })),
		durationBound("peer-retry-interval", link.MinRetryInterval, link.MaxRetryInterval, c(func(c cluster.Config) any { return c.PeerRetryInterval })),
		intBound("log-size", cluster.MinLogSize, maxInt, c(func(c cluster.Config) any { return c.LogSize })),
		durationBound("sync-interval", cluster.MinSyncInterval, cluster.MaxSyncInterval, c(func(c cluster.Config) any { return c.SyncInterval })),
		durationBound("sync-timeout", cluster.MinSyncTimeout, cluster.MaxSyncTimeout, c(func(c cluster.Config) any { return c.SyncTimeout })),
		intBound("sync-chunk-bytes", cluster.MinSyncChunkBytes, cluster.MaxSyncChunkBytes, c(func(c cluster.Config) any { return c.SyncChunkBytes })),
		intBound("write-acks", 1, acks.MaxLevel, c(func(c cluster.Config) any { return c.Writes.Default })),
		durationBound("write-timeout", acks.MinTimeout, acks.MaxTimeout, c(func(c cluster.Config) any { return c.Writes.Timeout })),
		intBound("breaker-failures", breaker.MinFailures, breaker.MaxFailures, c(func(c cluster.Config) any { return c.Breaker.Failures })),
		durationBound("breaker-cooldown", breaker.MinCooldown, breaker.MaxCooldown, c(func(c cluster.Config) any { return c.Breaker.Cooldown })),
		intBound("inbox-size", cluster.MinInboxSize, maxInt, c(func(c cluster.Config) any { return c.InboxSize })),
		intBound("max-streams", cluster.MinStreams, cluster.MaxStreamsLimit, c(func(c cluster.Config) any { return c.MaxStreams })),
		intBound("max-handshakes", cluster.MinHandshakes, cluster.MaxHandshakesLimit, c(func(c cluster.Config) any { return c.MaxHandshakes })),
		intBound("max-queued-frames", cluster.MinQueuedFrames, maxInt, c(func(c cluster.Config) any { return c.MaxQueuedFrames })),
		durationBound("handoff-timeout", 0, cluster.MaxHandoffTimeout, c(func(c cluster.Config) any { return c.HandoffTimeout })),
	}
}

// The cluster's numeric flags and the packages' Validate share their
// bounds: just past a bound the flag refuses the value, naming itself (or
// the variable); at a bound it takes it, and cluster.Config.Validate
// passes. So a bound changed in one place only fails here.
func TestClusterFlagBoundsMatchValidate(t *testing.T) {
	for _, b := range clusterBounds() {
		t.Run(b.flag, func(t *testing.T) {
			refused := []string{b.below}
			if b.above != "" {
				refused = append(refused, b.above)
			}
			for _, v := range refused {
				_, err := parseOptions([]string{"--" + b.flag, v}, nil, &bytes.Buffer{})
				require.Error(t, err, "--%s %s", b.flag, v)
				assert.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf("--%s %q: want ", b.flag, v)),
					"refused by the flag itself, which names it: %v", err)
				_, err = parseOptions(nil, env(map[string]string{envName(b.flag): v}), &bytes.Buffer{})
				require.Error(t, err, "%s=%s", envName(b.flag), v)
				assert.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf("%s=%q: want ", envName(b.flag), v)), "%v", err)
			}
			accepted := []string{b.min}
			if b.max != "" {
				accepted = append(accepted, b.max)
			}
			for _, v := range accepted {
				o, err := parseOptions([]string{"--" + b.flag, v}, nil, &bytes.Buffer{})
				if v == b.min && b.minRefusedBy != "" {
					assert.EqualError(t, err, b.minRefusedBy)
					continue
				}
				require.NoError(t, err, "--%s %s", b.flag, v)
				assert.Equal(t, v, b.got(o), "--%s sets its field", b.flag)
				require.NoError(t, o.cluster.Validate(), "--%s %s", b.flag, v)
			}
		})
	}
}

// Every numeric flag is in clusterBounds or known to set no cluster
// field: a new cluster flag cannot be left out of the test above.
func TestClusterFlagBoundsListEveryNumericFlag(t *testing.T) {
	notCluster := map[string]bool{
		"bulk-burst": true, "gc-percent": true, "fsync-interval": true, "max-concurrent-bulk": true,
		"max-concurrent-reads": true, "max-concurrent-writes": true, "max-connections": true,
		"max-header-bytes": true, "memory-trim-after": true, "read-wait": true, "shutdown-drain": true,
		"shutdown-timeout": true, "store-shards": true,
	}
	listed := map[string]bool{}
	for _, b := range clusterBounds() {
		listed[b.flag] = true
	}
	var help bytes.Buffer
	_, err := parseOptions([]string{"--help"}, nil, &help)
	require.ErrorIs(t, err, errHelp)
	numeric := regexp.MustCompile(`(?m)^  --([a-z0-9-]+) (int|duration|level)$`).FindAllStringSubmatch(help.String(), -1)
	require.NotEmpty(t, numeric)
	for _, m := range numeric {
		assert.True(t, listed[m[1]] != notCluster[m[1]], "--%s: in clusterBounds, or else in notCluster", m[1])
	}
}

// --help states a bounded flag's bounds as the flag checks them.
func TestHelpStatesClusterBounds(t *testing.T) {
	var help bytes.Buffer
	_, err := parseOptions([]string{"--help"}, nil, &help)
	require.ErrorIs(t, err, errHelp)
	for flag, want := range map[string]string{
		"max-streams":      fmt.Sprintf("(%d to %d) (default 512)", cluster.MinStreams, cluster.MaxStreamsLimit),
		"sync-interval":    "(10ms to 1m) (default 500ms)",
		"breaker-cooldown": "(10ms to 5m) (default 1s)",
		"log-size":         "(at least 16) (default 65536)",
		"write-acks":       fmt.Sprintf("1 to %d, quorum or all", acks.MaxLevel),
	} {
		_, block, _ := strings.Cut(help.String(), "\n  --"+flag+" ")
		block, _, _ = strings.Cut(block, "\n  --")
		assert.Contains(t, block, want, "--%s", flag)
	}
}
