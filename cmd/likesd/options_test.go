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

// env is an environment as os.Environ returns it.
func env(kv map[string]string) []string {
	var out []string
	for k, v := range kv {
		out = append(out, k+"="+v)
	}
	return out
}

func TestFlagsAndEnvironment(t *testing.T) {
	o, err := parseOptions([]string{"--http-addr", "127.0.0.1:9000", "--join", "a:7946, b:7946"},
		env(map[string]string{
			"LIKESD_HTTP_ADDR":          "127.0.0.1:1", // the flag wins
			"LIKESD_GOSSIP_ADDR":        "127.0.0.1:7000",
			"LIKESD_PUSH_PULL_INTERVAL": "3s",
			"LIKESD_NODE_NAME":          "n1",
			"LIKESD_READ_WAIT":          "250ms",
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
	assert.Equal(t, 250*time.Millisecond, o.api.ReadWait)
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
	assert.Equal(t, time.Second, o.api.ReadWait)
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
		{"bad env value", nil, map[string]string{"LIKESD_PACKET_SIZE": "big"}, `LIKESD_PACKET_SIZE="big": want an integer from 512 to 65000`},
		{"bad env duration", nil, map[string]string{"LIKESD_PUSH_PULL_INTERVAL": "banana"}, `LIKESD_PUSH_PULL_INTERVAL="banana": want a duration like 10s`},
		{"bad env enum", nil, map[string]string{"LIKESD_FAST_PATH": "carrier-pigeon"}, `LIKESD_FAST_PATH="carrier-pigeon": want direct or gossip`},
		{"bad fast path", []string{"--fast-path", "carrier-pigeon"}, nil, `--fast-path "carrier-pigeon": want direct or gossip`},
		{"bad duration", []string{"--flush-interval", "soon"}, nil, `--flush-interval "soon": want a duration like 10s`},
		{"interval zero", []string{"--push-pull-interval", "0s"}, nil, `--push-pull-interval "0s": want a positive duration`},
		{"timeout negative", []string{"--probe-timeout=-1s"}, nil, `--probe-timeout "-1s": want a positive duration`},
		{"drain negative", []string{"--shutdown-drain=-1s"}, nil, `--shutdown-drain "-1s": want a duration of 0s or more`},
		{"http addr nonsense", []string{"--http-addr", "nonsense"}, nil, `--http-addr "nonsense": want host:port`},
		{"gossip addr without port", []string{"--gossip-addr", "0.0.0.0"}, nil, `--gossip-addr "0.0.0.0": want an IP address and port`},
		{"gossip addr a name", []string{"--gossip-addr", "localhost:7946"}, nil, `--gossip-addr "localhost:7946": want an IP address`},
		{"bad log level", []string{"--log-level", "loud"}, nil, `--log-level "loud": want debug, info, warn or error`},
		{"bad log format", []string{"--log-format", "xml"}, nil, `--log-format "xml": want json or console`},
		{"bad seed", []string{"--join", "master"}, nil, `--join: seed "master": want host:port`},
		{"bad shards", []string{"--store-shards", "3"}, nil, `--store-shards "3": want a power of two`},
		{"packet too small", []string{"--packet-size", "100"}, nil, `--packet-size "100": want an integer from 512 to 65000`},
		{"log too small", []string{"--log-size", "1"}, nil, `--log-size "1": want an integer of at least 16`},
		{"chunk too small", []string{"--sync-chunk-bytes", "10"}, nil, `--sync-chunk-bytes "10": want an integer from 4096 to 2097152`},
		{"no streams", []string{"--max-streams", "0"}, nil, `--max-streams "0": want an integer from 1 to 65536`},
		{"too many handshakes", []string{"--max-handshakes", "4097"}, nil, `--max-handshakes "4097": want an integer from 1 to 4096`},
		{"sync interval too short", []string{"--sync-interval", "1ms"}, nil, `--sync-interval "1ms": want a duration from 10ms to 1m0s`},
		{"label too long", []string{"--cluster-label", strings.Repeat("x", 256)}, nil, `--cluster-label`},
		{"read wait negative", []string{"--read-wait=-1s"}, nil, `--read-wait "-1s": want a duration from 0s to 1m0s`},
		{"read wait too long", nil, map[string]string{"LIKESD_READ_WAIT": "61s"}, `LIKESD_READ_WAIT="61s": want a duration from 0s to 1m0s`},
		{"probe timeout too long", []string{"--probe-timeout", "2s"}, nil, "--probe-timeout 2s must be shorter than --probe-interval 1s"},
		{"trim too soon", []string{"--memory-trim-after", "500ms"}, nil, `--memory-trim-after "500ms": want 0 (never) or a duration from 1s to 1h0m0s`},
		{"trim negative", nil, map[string]string{"LIKESD_MEMORY_TRIM_AFTER": "-1s"}, `LIKESD_MEMORY_TRIM_AFTER="-1s": want 0 (never) or a duration from 1s to 1h0m0s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(tt.args, env(tt.env), &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			// Flags and variables are named, never the Go fields behind them.
			assert.NotRegexp(t, `\b[A-Z][a-z]+[A-Z][A-Za-z]*\b|invalid config|parse error`, err.Error())

			var out, errOut bytes.Buffer
			assert.Equal(t, 2, run(context.Background(), tt.args, env(tt.env), &out, &errOut), "a bad setting exits 2")
		})
	}
}

func TestUnknownEnvironmentIsWarned(t *testing.T) {
	o, err := parseOptions(nil, []string{
		"LIKESD_PUSH_PULL_INTERVL=3s", // misspelt
		"LIKESD_HTTP_ADDR=127.0.0.1:9000",
		"LIKESD_SERVICE_HOST=10.0.0.1", "LIKESD_PORT=tcp://10.0.0.1:80", "LIKESD_PORT_80_TCP_ADDR=10.0.0.1", // Kubernetes, for a Service named likesd
		"HOME=/root",
	}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Len(t, o.warnings, 1)
	assert.Contains(t, o.warnings[0], "LIKESD_PUSH_PULL_INTERVL")
	assert.Equal(t, "127.0.0.1:9000", o.api.Addr)
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

// --write-acks given, by flag or environment, is explicit: it then holds
// on a seed with no --join (acks.Config.Explicit); not given, it is not.
func TestWriteAcksExplicit(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		environ  map[string]string
		level    string
		explicit bool
	}{
		{nil, nil, "2", false},
		{[]string{"--write-acks", "2"}, nil, "2", true},
		{nil, map[string]string{"LIKESD_WRITE_ACKS": "quorum"}, "quorum", true},
		{nil, map[string]string{"LIKESD_WRITE_ACKS": ""}, "2", false},
		{[]string{"--write-acks", "all"}, map[string]string{"LIKESD_WRITE_ACKS": "1"}, "all", true},
	} {
		o, err := parseOptions(tt.args, env(tt.environ), &bytes.Buffer{})
		require.NoError(t, err, "%v %v", tt.args, tt.environ)
		assert.Equal(t, tt.level, o.cluster.Writes.Default.String(), "%v %v", tt.args, tt.environ)
		assert.Equal(t, tt.explicit, o.cluster.Writes.Explicit, "%v %v", tt.args, tt.environ)
	}
	_, err := parseOptions([]string{"--write-acks", "0"}, env(nil), &bytes.Buffer{})
	assert.ErrorContains(t, err, "--write-acks")
}

// A size out of the API's bounds is reported with the flag (or variable)
// the user typed.
func TestInputBoundsNameTheFlag(t *testing.T) {
	_, err := parseOptions([]string{"--max-header-bytes", "10"}, nil, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--max-header-bytes")
	_, err = parseOptions(nil, env(map[string]string{"LIKESD_MAX_HEADER_BYTES": "99999999"}), &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "LIKESD_MAX_HEADER_BYTES")
	o, err := parseOptions([]string{"--max-header-bytes", "8192"}, nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 8192, o.api.MaxHeaderBytes)
}

func TestLoadSheddingFlags(t *testing.T) {
	o, err := parseOptions([]string{"--max-concurrent-writes", "7", "--max-concurrent-bulk", "2", "--bulk-rate", "0.5"},
		env(map[string]string{"LIKESD_MAX_CONCURRENT_READS": "9", "LIKESD_BULK_BURST": "3"}), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 7, o.api.MaxWrites)
	assert.Equal(t, 2, o.api.MaxBulk)
	assert.Equal(t, 9, o.api.MaxReads)
	assert.Equal(t, 0.5, o.api.BulkRate)
	assert.Equal(t, 3, o.api.BulkBurst)
	for _, args := range [][]string{{"--max-concurrent-writes", "0"}, {"--bulk-rate", "-1"}, {"--bulk-burst", "0"}} {
		_, err := parseOptions(args, nil, &bytes.Buffer{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), args[0])
	}
}

func TestBulkReadAndPeersMemoryFlags(t *testing.T) {
	o, err := parseOptions([]string{"--max-bulk-read-bytes", "64MiB", "--memory-peers-refuse-at", "95"}, nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.EqualValues(t, 64<<20, o.api.MaxBulkReadBytes)
	assert.Equal(t, 0.95, o.budget.PeersRefuseAt)
	o, err = parseOptions(nil, nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.EqualValues(t, 32<<20, o.api.MaxBulkReadBytes)
	assert.Zero(t, o.budget.PeersRefuseAt, "0: halfway from --memory-refuse-at to the limit")
	for _, args := range [][]string{
		{"--max-bulk-read-bytes", "1MiB"}, // below one largest bulk body
		{"--max-bulk-read-bytes", "17GiB"},
		{"--memory-peers-refuse-at", "101"},
		{"--memory-peers-refuse-at", "80"}, // below --memory-refuse-at: Validate says so
	} {
		_, err := parseOptions(args, nil, &bytes.Buffer{})
		require.Error(t, err, "%v", args)
		assert.Contains(t, err.Error(), args[0])
	}
}

func TestAPITokenFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(good, []byte("write importer 0123456789abcdef0\n"), 0o600))
	o, err := parseOptions(nil, env(map[string]string{"LIKESD_API_TOKEN_FILE": good}), &bytes.Buffer{})
	require.NoError(t, err)
	require.NotNil(t, o.tokens)

	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("write importer short\n"), 0o600))
	_, err = parseOptions([]string{"--api-token-file", bad}, nil, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--api-token-file")
	assert.Contains(t, err.Error(), "line 1")
	_, err = parseOptions([]string{"--api-token-file", filepath.Join(dir, "none")}, nil, &bytes.Buffer{})
	require.Error(t, err)

	o, err = parseOptions(nil, nil, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Nil(t, o.tokens, "off by default")
}
