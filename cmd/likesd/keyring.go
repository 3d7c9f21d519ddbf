package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// The gossip keyring: --gossip-key-file holds one base64 key per line, the
// first the primary (gossip is encrypted with it), the others accepted too,
// so that a key can be rotated without downtime (docs/deploy.md, Rotating
// the gossip key). The running node re-reads the file and applies what
// changed to the ring memberlist and the streams read.

// keyringPoll is how often a running node re-reads --gossip-key-file
// (SIGHUP re-reads at once). The kubelet takes up to a minute or so to
// update a mounted Secret; a few seconds more cost nothing.
const keyringPoll = 2 * time.Second

// knownPublicKeys are keys anyone can read (they were shipped in this
// repository): likesd refuses them unless --dev-allow-demo-key.
var knownPublicKeys = map[string]string{
	"bGlrZXNkLWRlbW8ta2V5LXJlcGxhY2UtbWUtcGxlYXM=": "the demo key once shipped in deploy/k8s/01-secret.yaml and deploy/compose/gossip.key",
}

var errKeyring = errors.New("keyring")

// parseKeyring reads a keyring file's text: one base64 key (16, 24 or 32
// bytes) a line, blank lines and # comments allowed, the first key the
// primary. A key published anywhere (knownPublicKeys) is refused unless
// allowPublic.
func parseKeyring(text string, allowPublic bool) ([][]byte, error) {
	var keys [][]byte
	seen := map[string]int{} // key → line
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n := i + 1
		key, err := decodeKey(line, allowPublic)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if first, ok := seen[string(key)]; ok {
			return nil, fmt.Errorf("line %d: %w: the same key as line %d", n, errKeyring, first)
		}
		seen[string(key)] = n
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key (one base64 key a line, the first the primary)", errKeyring)
	}
	return keys, nil
}

// decodeKey decodes one base64 key and checks it.
func decodeKey(b64 string, allowPublic bool) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", errKeyring, err)
	}
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%w: key is %d bytes; want 16, 24 or 32 (likesd keygen, or head -c 32 /dev/urandom | base64)", errKeyring, n)
	}
	if what, ok := knownPublicKeys[base64.StdEncoding.EncodeToString(key)]; ok && !allowPublic {
		return nil, fmt.Errorf("%w: this is %s: anyone can read it, so it protects nothing. "+
			"Make one with likesd keygen (or head -c 32 /dev/urandom | base64); --dev-allow-demo-key allows it on a laptop", errKeyring, what)
	}
	return key, nil
}

// fingerprint names a key without revealing it: the first 16 hex digits of
// its SHA-256 (echo KEY | base64 -d | sha256sum | cut -c1-16).
func fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

func fingerprints(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fingerprint(k)
	}
	return out
}

// newKeyring is the ring of keys, keys[0] its primary.
func newKeyring(keys [][]byte) (*memberlist.Keyring, error) {
	return memberlist.NewKeyring(keys[1:], keys[0])
}

// ring is what reloading needs of a *memberlist.Keyring (a fake in tests
// records the order of the calls).
type ring interface {
	AddKey(key []byte) error
	UseKey(key []byte) error
	RemoveKey(key []byte) error
	GetKeys() [][]byte
	GetPrimaryKey() []byte
}

// keyringChange is what applyKeys did, by fingerprint.
type keyringChange struct {
	added, removed []string
	primary        string // the new primary; empty when it did not change
}

func (c keyringChange) empty() bool {
	return len(c.added) == 0 && len(c.removed) == 0 && c.primary == ""
}

// applyKeys makes r hold exactly keys, keys[0] its primary, in the order
// that never leaves the node unable to read a peer that already moved on:
// add the new keys, then switch the primary, then remove the keys no longer
// listed. It stops at the first error; what it did until then stays done
// (every state on the way is a valid ring).
func applyKeys(r ring, keys [][]byte) (keyringChange, error) {
	var c keyringChange
	have := slices.Clone(r.GetKeys())
	has := func(set [][]byte, k []byte) bool {
		return slices.ContainsFunc(set, func(x []byte) bool { return bytes.Equal(x, k) })
	}
	for _, k := range keys {
		if has(have, k) {
			continue
		}
		if err := r.AddKey(k); err != nil {
			return c, fmt.Errorf("add key %s: %w", fingerprint(k), err)
		}
		c.added = append(c.added, fingerprint(k))
	}
	if !bytes.Equal(r.GetPrimaryKey(), keys[0]) {
		if err := r.UseKey(keys[0]); err != nil {
			return c, fmt.Errorf("use key %s: %w", fingerprint(keys[0]), err)
		}
		c.primary = fingerprint(keys[0])
	}
	// memberlist's RemoveKey shifts the ring's slice in place while
	// readers (its own decryption among them) hold that slice without the
	// lock: a data race, unless the key removed is the last, which shifts
	// nothing. So keys go from the end: the kept keys behind one to remove
	// are taken off and added back (for that moment a message under them
	// would fail to open, and is sent again).
	for {
		cur := slices.Clone(r.GetKeys())
		at := slices.IndexFunc(cur[1:], func(k []byte) bool { return !has(keys, k) })
		if at < 0 {
			return c, nil
		}
		at++
		kept := cur[at+1:]
		for i := len(cur) - 1; i >= at; i-- {
			if err := r.RemoveKey(cur[i]); err != nil {
				return c, fmt.Errorf("remove key %s: %w", fingerprint(cur[i]), err)
			}
		}
		c.removed = append(c.removed, fingerprint(cur[at]))
		for _, k := range kept {
			if err := r.AddKey(k); err != nil {
				return c, fmt.Errorf("add key %s back: %w", fingerprint(k), err)
			}
		}
	}
}

// keyReloader applies --gossip-key-file to the ring whenever its content
// changes.
type keyReloader struct {
	file        string
	allowPublic bool
	ring        ring
	log         zerolog.Logger
	last        []byte // the content last read, applied or refused
	lastErr     error  // why it was refused (or not all applied); nil if applied
	readErr     string // the last read's error, logged once
}

// reload reads the file and, when its content changed since the last read,
// applies it. A file that cannot be read or is invalid leaves the ring as
// it is, logged once per content (a missing file is retried every time).
func (r *keyReloader) reload() error {
	raw, err := os.ReadFile(r.file)
	if err != nil {
		if r.readErr != err.Error() { // once per cause, not every poll
			r.log.Warn().Err(err).Str("file", r.file).Msg("cannot read --gossip-key-file: keeping the current keyring")
		}
		r.readErr = err.Error()
		return err
	}
	r.readErr = ""
	if r.last != nil && bytes.Equal(raw, r.last) {
		return r.lastErr
	}
	r.last = raw
	keys, err := parseKeyring(string(raw), r.allowPublic)
	r.lastErr = err
	if err != nil {
		r.log.Error().Err(err).Str("file", r.file).Strs("keys", fingerprints(r.ring.GetKeys())).
			Msg("--gossip-key-file is invalid: keeping the current keyring until it is fixed")
		return err
	}
	c, err := applyKeys(r.ring, keys)
	r.lastErr = err
	ev := r.log.Info()
	if err != nil {
		ev = r.log.Error().Err(err)
	}
	if err != nil || !c.empty() {
		ev.Str("file", r.file).Strs("added", c.added).Strs("removed", c.removed).Str("new_primary", c.primary).
			Str("primary", fingerprint(r.ring.GetPrimaryKey())).Strs("keys", fingerprints(r.ring.GetKeys())).
			Msg("gossip keyring reloaded from --gossip-key-file")
	}
	return err
}

// run re-reads the file every poll and at every receive on hup, until ctx
// ends.
func (r *keyReloader) run(ctx context.Context, poll time.Duration, hup <-chan os.Signal) {
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-hup:
			r.log.Info().Str("file", r.file).Msg("SIGHUP: re-reading --gossip-key-file")
		}
		_ = r.reload() // logged
	}
}

// ringView shows a keyring at GET /admin/keyring (api.Keyring).
type ringView struct{ ring ring }

// Fingerprints reads the keys once: memberlist keeps the primary first, so
// the reply is one state of the ring even while a reload changes it.
func (v ringView) Fingerprints() (string, []string) {
	keys := fingerprints(v.ring.GetKeys())
	if len(keys) == 0 {
		return "", nil
	}
	return keys[0], keys
}

// keygen is `likesd keygen [--out FILE]`: a new random 32-byte key, base64,
// printed, or written to FILE (mode 0400) unless FILE already holds one,
// which is then kept: what a deployment's first start runs (the compose
// file's keygen service).
func keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("likesd keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write the key to this file unless it exists (then keep it); empty: print it")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fmt.Fprintf(stderr, "likesd keygen: unexpected arguments %q\n", fs.Args())
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintf(stderr, "likesd keygen: %v\n", err)
		return 1
	}
	line := base64.StdEncoding.EncodeToString(key) + "\n"
	if *out == "" {
		fmt.Fprint(stdout, line)
		return 0
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	switch {
	case errors.Is(err, os.ErrExist):
		fmt.Fprintf(stderr, "likesd keygen: %s exists: kept\n", *out)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "likesd keygen: %v\n", err)
		return 1
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(*out) // no half-written key for the next start to keep
		fmt.Fprintf(stderr, "likesd keygen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "likesd keygen: wrote a new key to %s (fingerprint %s)\n", *out, fingerprint(key))
	return 0
}
