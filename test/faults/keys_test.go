//go:build faults

package faults

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The gossip keyring each node reads (--gossip-key-file), and rotate-key:
// the three steps of docs/deploy.md ("Rotating the gossip key") done to
// every node's file while the load runs, one node after another with a
// pause between (as pods whose mounted Secret the kubelet refreshes at
// different times), each node waited for on its /admin/keyring. Steps 1
// and 3 tell each node by SIGHUP; step 2, the switch of the primary, waits
// for the node's own poll of the file, so the nodes encrypt with
// different keys for seconds while the likes flow.

// keyringTimeout bounds how long a node may take to show a rewritten file
// (it is told by SIGHUP; its own poll is every 2 s).
const keyringTimeout = 20 * time.Second

func newGossipKey(t *testing.T) []byte {
	k := make([]byte, 32)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

// writeKeyring replaces path with keys, one base64 line each, the primary
// first: written aside and renamed, so a node never reads half a file.
func writeKeyring(path string, keys [][]byte) error {
	var b strings.Builder
	b.WriteString("# written by the fault test\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fingerprint is what /admin/keyring shows for a key: the first 16 hex
// digits of its SHA-256 (docs/api.md), computed here independently.
func fingerprint(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

type keyringReply struct {
	Encrypted bool     `json:"encrypted"`
	Primary   string   `json:"primary"`
	Keys      []string `json:"keys"`
}

// waitKeyring polls n's /admin/keyring until it holds exactly keys with
// keys[0] primary.
func (c *cluster) waitKeyring(ctx context.Context, n *node, keys [][]byte) error {
	want := keyringReply{Encrypted: true, Primary: fingerprint(keys[0])}
	for _, k := range keys {
		want.Keys = append(want.Keys, fingerprint(k))
	}
	var got keyringReply
	for {
		err := getJSON(ctx, c.hc, n.url+"/admin/keyring", &got)
		if err == nil && got.Encrypted && got.Primary == want.Primary && slices.Equal(got.Keys, want.Keys) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: /admin/keyring %+v (err %v), want %+v", n.name(), got, err, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rotateKey replaces the cluster's key by a new one: (1) the new key as a
// second line on every node, (2) moved to the first line, (3) the old line
// removed. Nodes are rewritten in order, one at a time, each waited for,
// so for a while at every step some nodes have moved on and others not.
func (c *cluster) rotateKey(order []int, gap time.Duration) error {
	old, next := c.keys[0], newGossipKey(c.t)
	c.t.Logf("rotate-key: %s -> %s", fingerprint(old), fingerprint(next))
	for _, step := range []struct {
		name string
		keys [][]byte
		hup  bool
	}{
		{"add the new key", [][]byte{old, next}, true},
		{"make it primary", [][]byte{next, old}, false},
		{"remove the old key", [][]byte{next}, true},
	} {
		start := time.Now()
		for j, i := range order {
			if j > 0 {
				time.Sleep(gap) // the fault's pacing: not an assertion
			}
			n := c.node(i)
			if err := writeKeyring(n.keyFile, step.keys); err != nil {
				return err
			}
			if step.hup {
				if err := n.hup(); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), keyringTimeout)
			err := c.waitKeyring(ctx, n, step.keys)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", step.name, err)
			}
		}
		c.keys = step.keys
		c.t.Logf("rotate-key: %s: every node in %v", step.name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}
