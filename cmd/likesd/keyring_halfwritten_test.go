package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Review of #21: docs/deploy.md: "A node that reads a half-written file
// keeps its keys". A 32-byte key's base64 is 44 characters; its first 32
// are valid unpadded base64 of 24 bytes, an AES-192 key parseKeyring
// takes. A step-2 file ("NEW\nOLD\n") read after its first 32 bytes were
// written makes a garbage key the primary and removes every real key: the
// node can read no peer and no peer can read it until the next poll.
func TestAHalfWrittenKeyringFileKeepsTheRing(t *testing.T) {
	old, next := testKey(1, 32), testKey(2, 32)
	file := filepath.Join(t.TempDir(), "gossip.key")
	r := newRecordingRing(t, old)
	require.NoError(t, r.AddKey(next)) // step 1 done: [old, next]
	kr := &keyReloader{file: file, ring: r, log: zerolog.Nop()}

	full := b64(next) + "\n" + b64(old) + "\n" // step 2, being written
	require.NoError(t, os.WriteFile(file, []byte(full[:32]), 0o600))
	_ = kr.reload()
	assert.Contains(t, r.GetKeys(), old, "the half-written file removed the key the peers encrypt with")
	assert.Contains(t, r.GetKeys(), next, "and the new one")
	t.Logf("ring after reading %q: %d keys, primary %d bytes", full[:32], len(r.GetKeys()), len(r.GetPrimaryKey()))
}
