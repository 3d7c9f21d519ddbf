package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestFlagsAndEnvironment(t *testing.T) {
	o, err := parseOptions([]string{"--http-addr", "127.0.0.1:9000", "--join", "a:7946, b:7946"},
		env(map[string]string{
			"LIKESD_HTTP_ADDR":          "127.0.0.1:1", // the flag wins
			"LIKESD_GOSSIP_ADDR":        "127.0.0.1:7000",
			"LIKESD_PUSH_PULL_INTERVAL": "3s",
			"LIKESD_NODE_NAME":          "n1",
			"LIKESD_ADVERTISE_ADDR":     "10.1.2.3",
			"LIKESD_VERSION":            "true", // not a setting
		}), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", o.api.Addr)
	assert.Equal(t, "127.0.0.1", o.cluster.BindAddr)
	assert.Equal(t, 7000, o.cluster.BindPort)
	assert.Equal(t, "10.1.2.3", o.cluster.AdvertiseAddr)
	assert.Zero(t, o.cluster.AdvertisePort)
	assert.Equal(t, []string{"a:7946", "b:7946"}, o.cluster.Seeds)
	assert.Equal(t, 3*time.Second, o.cluster.PushPullInterval)
	assert.Equal(t, "n1", o.cluster.NodeName)
	assert.False(t, o.showVersion)
}

func TestDefaults(t *testing.T) {
	o, err := parseOptions(nil, env(nil), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, ":8080", o.api.Addr)
	assert.Equal(t, "0.0.0.0", o.cluster.BindAddr)
	assert.Equal(t, 7946, o.cluster.BindPort)
	assert.Empty(t, o.cluster.Seeds)
	assert.LessOrEqual(t, o.cluster.PushPullInterval, 10*time.Second)
	other, err := parseOptions(nil, env(nil), &bytes.Buffer{})
	require.NoError(t, err)
	assert.NotEqual(t, o.cluster.NodeName, other.cluster.NodeName, "a default name is new at every start")
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, "not defined"},
		{"stray argument", []string{"serve"}, nil, "unexpected arguments"},
		{"bad env value", nil, map[string]string{"LIKESD_PACKET_SIZE": "big"}, "LIKESD_PACKET_SIZE"},
		{"gossip addr without port", []string{"--gossip-addr", "0.0.0.0"}, nil, "--gossip-addr"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad log format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"bad seed", []string{"--join", "master"}, nil, "seed"},
		{"bad shards", []string{"--store-shards", "3"}, nil, "Shards"},
		{"probe timeout too long", []string{"--probe-timeout", "2s"}, nil, "ProbeTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(tt.args, env(tt.env), &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestGossipKey(t *testing.T) {
	k32 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	o, err := parseOptions(nil, env(map[string]string{"LIKESD_GOSSIP_KEY": k32}), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{7}, 32), o.cluster.SecretKey)
	assert.Equal(t, "likesd", o.cluster.Label)

	file := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 16))+"\n"), 0o600))
	o, err = parseOptions([]string{"--gossip-key-file", file, "--cluster-label", "prod"}, env(nil), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{9}, 16), o.cluster.SecretKey)
	assert.Equal(t, "prod", o.cluster.Label)

	o, err = parseOptions([]string{"--gossip-key", k32, "--gossip-key-file", file}, env(nil), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Len(t, o.cluster.SecretKey, 32, "the key itself wins over the file")

	for name, args := range map[string][]string{
		"not base64":   {"--gossip-key", "%%%"},
		"wrong length": {"--gossip-key", base64.StdEncoding.EncodeToString([]byte("short"))},
		"missing file": {"--gossip-key-file", "/nonexistent/key"},
	} {
		_, err := parseOptions(args, env(nil), &bytes.Buffer{})
		assert.Error(t, err, name)
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 0, run(context.Background(), []string{"--help"}, env(nil), &out, &errOut))
	for _, want := range []string{"--http-addr", "LIKESD_HTTP_ADDR", "--join", "--gossip-addr", "--advertise-addr", "--node-name", "--log-level", "--log-format", "--push-pull-interval"} {
		assert.Contains(t, out.String(), want)
	}
	out.Reset()
	assert.Equal(t, 0, run(context.Background(), []string{"--version"}, env(nil), &out, &errOut))
	assert.Equal(t, "likesd dev\n", out.String())
	errOut.Reset()
	assert.Equal(t, 2, run(context.Background(), []string{"--bogus"}, env(nil), &out, &errOut))
	assert.True(t, strings.HasPrefix(errOut.String(), "likesd: flag provided but not defined"), errOut.String())
}
