package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const demoKey = "bGlrZXNkLWRlbW8ta2V5LXJlcGxhY2UtbWUtcGxlYXM="

func testKey(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
func b64(k []byte) string          { return base64.StdEncoding.EncodeToString(k) }

func TestParseKeyring(t *testing.T) {
	a, b, c := testKey(1, 32), testKey(2, 16), testKey(3, 24)
	good := []struct {
		name, text string
		want       [][]byte
	}{
		{"one key, no newline", b64(a), [][]byte{a}},
		{"one key, as the old single-key files", b64(a) + "\n", [][]byte{a}},
		{"primary first", b64(b) + "\n" + b64(a) + "\n", [][]byte{b, a}},
		{"comments, blanks, spaces, CRLF", "# rotated 2026-12-07\r\n\r\n  " + b64(c) + "  \r\n# the old one\n\t" + b64(a) + "\n\n", [][]byte{c, a}},
	}
	for _, tt := range good {
		got, err := parseKeyring(tt.text, false)
		require.NoError(t, err, tt.name)
		assert.Equal(t, tt.want, got, tt.name)
	}

	bad := []struct {
		name, text, want string
	}{
		{"empty", "", "no key"},
		{"only comments", "# nothing yet\n\n", "no key"},
		{"not base64", b64(a) + "\nnot-a-key!\n", "line 2: keyring: not base64"},
		{"too short", "# c\n" + b64([]byte("short")), "line 2: keyring: key is 5 bytes; want 16, 24 or 32"},
		{"33 bytes", b64(testKey(4, 33)), "key is 33 bytes"},
		{"duplicate", b64(a) + "\n" + b64(b) + "\n\n" + b64(a), "line 4: keyring: the same key as line 1"},
		{"the demo key", demoKey, "line 1: keyring: this is the demo key once shipped"},
		{"the demo key as a second key", b64(a) + "\n" + demoKey, "line 2: keyring: this is the demo key"},
		{"a comment after the key", b64(a) + " # primary", "not base64"},
	}
	for _, tt := range bad {
		_, err := parseKeyring(tt.text, false)
		require.Error(t, err, tt.name)
		assert.ErrorIs(t, err, errKeyring, tt.name)
		assert.Contains(t, err.Error(), tt.want, tt.name)
	}
	got, err := parseKeyring(demoKey+"\n", true)
	require.NoError(t, err, "--dev-allow-demo-key")
	assert.Len(t, got, 1)
}

// The demo key is refused wherever it comes from, with the flag named and
// the way out said, unless --dev-allow-demo-key; a keyring file becomes the
// cluster's Keyring, its first key the primary.
func TestGossipKeyring(t *testing.T) {
	dir := t.TempDir()
	demoFile := filepath.Join(dir, "demo")
	require.NoError(t, os.WriteFile(demoFile, []byte(demoKey+"\n"), 0o600))
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"flag":     {args: []string{"--gossip-key", demoKey}, want: "--gossip-key: this is the demo key"},
		"variable": {env: map[string]string{"LIKESD_GOSSIP_KEY": demoKey}, want: "--gossip-key: this is the demo key"},
		"file":     {args: []string{"--gossip-key-file", demoFile}, want: "--gossip-key-file " + demoFile + ": line 1: this is the demo key"},
	} {
		_, err := parseOptions(tc.args, env(tc.env), &bytes.Buffer{})
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.want, name)
		assert.Contains(t, err.Error(), "--dev-allow-demo-key", name)
		assert.Contains(t, err.Error(), "likesd keygen", name)

		o, err := parseOptions(append(tc.args, "--dev-allow-demo-key"), env(tc.env), &bytes.Buffer{})
		require.NoError(t, err, name)
		require.NotNil(t, o.cluster.Keyring, name)
	}
	_, err := parseOptions([]string{"--gossip-key-file", demoFile}, env(map[string]string{"LIKESD_DEV_ALLOW_DEMO_KEY": "true"}), &bytes.Buffer{})
	require.NoError(t, err, "LIKESD_DEV_ALLOW_DEMO_KEY")

	a, b := testKey(1, 32), testKey(2, 32)
	file := filepath.Join(dir, "ring")
	require.NoError(t, os.WriteFile(file, []byte(b64(b)+"\n"+b64(a)+"\n"), 0o600))
	o, err := parseOptions([]string{"--gossip-key-file", file}, env(nil), &bytes.Buffer{})
	require.NoError(t, err)
	require.NotNil(t, o.cluster.Keyring)
	assert.Equal(t, b, o.cluster.Keyring.GetPrimaryKey())
	assert.Equal(t, [][]byte{b, a}, o.cluster.Keyring.GetKeys())
	assert.Equal(t, b, o.cluster.SecretKey)
	assert.Equal(t, file, o.keyFile, "re-read while running")

	o, err = parseOptions([]string{"--gossip-key", b64(a), "--gossip-key-file", file}, env(nil), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, [][]byte{a}, o.cluster.Keyring.GetKeys(), "the key itself wins over the file")
	assert.Empty(t, o.keyFile, "a key given as a value is not re-read")

	require.NoError(t, os.WriteFile(file, []byte(b64(a)+"\n"+b64(a)+"\n"), 0o600))
	_, err = parseOptions([]string{"--gossip-key-file", file}, env(nil), &bytes.Buffer{})
	require.Error(t, err)
	assert.Equal(t, "--gossip-key-file "+file+": line 2: the same key as line 1", err.Error())

	o, err = parseOptions(nil, env(nil), &bytes.Buffer{})
	require.NoError(t, err)
	assert.Nil(t, o.cluster.Keyring, "no key: plaintext, warned at start")
}

// recordingRing is a real keyring that records the calls made to it, and
// fails the ones listed in fail.
type recordingRing struct {
	*memberlist.Keyring
	calls []string
	fail  map[string]bool
}

func (r *recordingRing) do(op string, key []byte, f func([]byte) error) error {
	call := op + " " + fingerprint(key)
	r.calls = append(r.calls, call)
	if r.fail[call] {
		return errors.New("refused")
	}
	return f(key)
}
func (r *recordingRing) AddKey(k []byte) error    { return r.do("add", k, r.Keyring.AddKey) }
func (r *recordingRing) UseKey(k []byte) error    { return r.do("use", k, r.Keyring.UseKey) }
func (r *recordingRing) RemoveKey(k []byte) error { return r.do("remove", k, r.Keyring.RemoveKey) }

func newRecordingRing(t *testing.T, keys ...[]byte) *recordingRing {
	kr, err := newKeyring(keys)
	require.NoError(t, err)
	return &recordingRing{Keyring: kr, fail: map[string]bool{}}
}

// A reload adds the new keys, then switches the primary, then removes what
// is no longer listed: at no point does the node lack a key a peer that
// read the file first may already use.
func TestApplyKeysOrder(t *testing.T) {
	old, next, third := testKey(1, 32), testKey(2, 32), testKey(3, 32)
	fo, fn, ft := fingerprint(old), fingerprint(next), fingerprint(third)

	steps := []struct {
		name  string
		file  [][]byte
		calls []string
		want  keyringChange
	}{
		{"1. the new key as a second line", [][]byte{old, next}, []string{"add " + fn}, keyringChange{added: []string{fn}}},
		{"again: nothing to do", [][]byte{old, next}, nil, keyringChange{}},
		{"2. moved to the first line", [][]byte{next, old}, []string{"use " + fn}, keyringChange{primary: fn}},
		{"3. the old line removed", [][]byte{next}, []string{"remove " + fo}, keyringChange{removed: []string{fo}}},
		{"a new key and the ring's kept", [][]byte{third, next}, []string{"add " + ft, "use " + ft}, keyringChange{added: []string{ft}, primary: ft}},
	}
	r := newRecordingRing(t, old)
	for _, s := range steps {
		r.calls = nil
		got, err := applyKeys(r, s.file)
		require.NoError(t, err, s.name)
		assert.Equal(t, s.calls, r.calls, s.name)
		assert.Equal(t, s.want, got, s.name)
		assert.Equal(t, s.file[0], r.GetPrimaryKey(), s.name)
		assert.ElementsMatch(t, s.file, r.GetKeys(), s.name)
	}

	// A file sharing no key with the ring (all three steps at once, or
	// one half written) is refused: it would cut the node off.
	r = newRecordingRing(t, next)
	_, err0 := applyKeys(r, [][]byte{third})
	require.ErrorIs(t, err0, errKeyring)
	assert.Empty(t, r.calls)
	assert.Equal(t, [][]byte{next}, r.GetKeys())

	// Several keys removed at once: memberlist's RemoveKey shifts the
	// ring's slice in place, and none may be skipped.
	r = newRecordingRing(t, old, next, third, testKey(4, 16))
	_, err := applyKeys(r, [][]byte{third})
	require.NoError(t, err)
	assert.Equal(t, [][]byte{third}, r.GetKeys())

	// A refused step stops the reload where it is: the ring stays a valid
	// one (the new key added, the old still primary), and it says what.
	r = newRecordingRing(t, old)
	r.fail["use "+fn] = true
	got, err := applyKeys(r, [][]byte{next, old})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "use key "+fn)
	assert.Equal(t, []string{"add " + fn, "use " + fn}, r.calls, "nothing removed after a failed switch")
	assert.Equal(t, keyringChange{added: []string{fn}}, got)
	assert.Equal(t, old, r.GetPrimaryKey())
}

func TestKeyReloaderKeepsTheRingOnABadFile(t *testing.T) {
	old, next := testKey(1, 32), testKey(2, 32)
	file := filepath.Join(t.TempDir(), "gossip.key")
	write := func(text string) { require.NoError(t, os.WriteFile(file, []byte(text), 0o600)) }
	r := newRecordingRing(t, old)
	logs := &syncBuffer{}
	kr := &keyReloader{file: file, ring: r, log: zerolog.New(logs)}

	write(b64(old) + "\n")
	require.NoError(t, kr.reload())
	assert.Empty(t, r.calls, "the file as at start: nothing to do")
	assert.Empty(t, logs.String(), "and nothing to say")

	for _, bad := range []string{"", "%%%\n", b64(next) + "\n" + b64([]byte("short")), demoKey} {
		write(bad)
		require.Error(t, kr.reload(), "%q", bad)
		assert.Equal(t, [][]byte{old}, r.GetKeys(), "%q: the ring stays", bad)
	}
	assert.Contains(t, logs.String(), "keeping the current keyring until it is fixed")
	n := strings.Count(logs.String(), "\n")
	require.Error(t, kr.reload(), "still bad")
	assert.Equal(t, n, strings.Count(logs.String(), "\n"), "the same bad content is logged once")

	require.NoError(t, os.Remove(file))
	require.Error(t, kr.reload())
	assert.Equal(t, [][]byte{old}, r.GetKeys(), "a missing file keeps the ring")

	write("# rotation, step 1\n" + b64(old) + "\n" + b64(next) + "\n")
	require.NoError(t, kr.reload())
	assert.Equal(t, [][]byte{old, next}, r.GetKeys())
	assert.Contains(t, logs.String(), fingerprint(next))
	assert.NotContains(t, logs.String(), b64(next), "fingerprints, never keys")
	assert.NotContains(t, logs.String(), b64(old))
}

// A node started on a keyring file shows it at /admin/keyring, follows the
// file through the three rotation steps without a restart, and keeps
// running on its ring when the file goes bad.
func TestKeyringFileIsFollowedWhileRunning(t *testing.T) {
	old, next := testKey(1, 32), testKey(2, 32)
	file := filepath.Join(t.TempDir(), "gossip.key")
	write := func(keys ...[]byte) {
		var lines []string
		for _, k := range keys {
			lines = append(lines, b64(k))
		}
		// Replaced, not rewritten in place, as the kubelet does.
		require.NoError(t, os.WriteFile(file+".new", []byte(strings.Join(lines, "\n")+"\n"), 0o600))
		require.NoError(t, os.Rename(file+".new", file))
	}
	write(old)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	logs := &syncBuffer{}
	args := []string{"--http-addr", httpAddr, "--gossip-addr", "127.0.0.1:0", "--gossip-key-file", file, "--log-format", "json"}
	go func() { done <- run(ctx, args, nil, &syncBuffer{}, logs) }()
	type reply struct {
		Encrypted bool     `json:"encrypted"`
		Primary   string   `json:"primary"`
		Keys      []string `json:"keys"`
	}
	get := func() reply {
		var r reply
		resp, err := http.Get("http://" + httpAddr + "/admin/keyring")
		if err != nil {
			return r
		}
		defer resp.Body.Close()
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return r
	}
	shows := func(keys ...[]byte) func() bool {
		want := reply{Encrypted: true, Primary: fingerprint(keys[0]), Keys: fingerprints(keys)}
		return func() bool {
			g := get()
			return g.Primary == want.Primary && strings.Join(g.Keys, ",") == strings.Join(want.Keys, ",")
		}
	}
	wait := func(msg string, keys ...[]byte) {
		t.Helper()
		require.Eventually(t, shows(keys...), 15*time.Second, 20*time.Millisecond, "%s: %+v\n%s", msg, get(), logs)
	}
	wait("at start", old)
	write(old, next)
	wait("step 1", old, next)
	write(next, old)
	wait("step 2", next, old)
	write(next)
	wait("step 3", next)

	require.NoError(t, os.WriteFile(file, []byte("not a key\n"), 0o600))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "--gossip-key-file is invalid") }, 15*time.Second, 20*time.Millisecond)
	assert.True(t, shows(next)(), "the ring stays as it was")
	assert.NotContains(t, logs.String(), b64(next))

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after cancel")
	}
}

func TestKeygen(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"keygen"}, nil, &out, &errOut), errOut.String())
	keys, err := parseKeyring(out.String(), false)
	require.NoError(t, err, "a printed key is a keyring file")
	assert.Len(t, keys[0], 32)

	file := filepath.Join(t.TempDir(), "gossip.key")
	require.Equal(t, 0, run(context.Background(), []string{"keygen", "--out", file}, nil, &out, &errOut), errOut.String())
	first, err := os.ReadFile(file)
	require.NoError(t, err)
	_, err = parseKeyring(string(first), false)
	require.NoError(t, err)
	st, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o400), st.Mode().Perm())
	assert.NotContains(t, errOut.String(), strings.TrimSpace(string(first)), "the key is not logged")

	require.Equal(t, 0, run(context.Background(), []string{"keygen", "--out", file}, nil, &out, &errOut), "a second start")
	again, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, first, again, "an existing key is kept")
	assert.Contains(t, errOut.String(), "kept")
	left, err := os.ReadDir(filepath.Dir(file))
	require.NoError(t, err)
	assert.Len(t, left, 1, "no temporary file left beside the key")

	assert.Equal(t, 2, run(context.Background(), []string{"keygen", "extra"}, nil, &out, &errOut))
}

// memberlist's RemoveKey shifts its slice in place under readers that hold
// it without the lock (its decryption does): removing a key that is not
// the last raced with them (go test -race saw it).
var readSink atomic.Int64

func TestRemovingAMiddleKeyDoesNotRaceReaders(t *testing.T) {
	p, x, y := testKey(1, 32), testKey(2, 32), testKey(3, 32)
	for range 20 {
		ring, err := memberlist.NewKeyring([][]byte{x, y}, p)
		require.NoError(t, err)
		require.Equal(t, [][]byte{p, x, y}, ring.GetKeys())
		stop, done := make(chan struct{}), make(chan struct{})
		started := make(chan struct{})
		go func() {
			defer close(done)
			n := 0
			defer func() { readSink.Add(int64(n)) }()
			close(started)
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, k := range ring.GetKeys() { // as memberlist's decrypt reads them
					n += len(k)
				}
			}
		}()
		<-started
		_, err = applyKeys(ring, [][]byte{p, y})
		close(stop)
		<-done
		require.NoError(t, err)
		assert.Equal(t, [][]byte{p, y}, ring.GetKeys())
	}
}
