package antientropy

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

// twoSynced returns two synced syncers that know each other, a with likes
// only it holds.
func twoSynced(t *testing.T) (a, b *Syncer, sa, sb *store.Store, nodes map[string]*Syncer) {
	t.Helper()
	a, sa = newSyncer(t, "a", false)
	b, sb = newSyncer(t, "b", false)
	a.Tick(t0)
	b.Tick(t0)
	require.True(t, a.Synced() && b.Synced())
	a.SetPeers(t0, []string{"b"})
	b.SetPeers(t0, []string{"a"})
	for i := range 200 {
		sa.Like("p", fmt.Sprintf("u%d", i))
	}
	return a, b, sa, sb, map[string]*Syncer{"a": a, "b": b}
}

func ofType[T Action](actions []Action) []T {
	var out []T
	for _, x := range actions {
		if v, ok := x.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// Two nodes whose digest keys differ never compare digests: the peer
// refuses the expand, the session ends at once with ErrKeyMismatch, and
// nothing is repaired from digests under different keys. Once both are
// under one key, the next session repairs.
func TestNodesWithDifferentDigestKeysNeverCompare(t *testing.T) {
	a, b, sa, sb, nodes := twoSynced(t)
	ka, kb := gset.DeriveKey([]byte("key a")), gset.DeriveKey([]byte("key b"))
	sa.Rekey(ka)
	sb.Rekey(kb)

	got := pump(t, nodes, a.Tick(t0.Add(time.Second)))
	ended := ofType[SessionEnded](got)
	require.Len(t, ended, 1)
	assert.ErrorIs(t, ended[0].Err, ErrKeyMismatch)
	assert.Zero(t, ended[0].Pushed+ended[0].Pulled)
	assert.Contains(t, got, KeyMismatch{Peer: "a", Mine: kb.ID(), Theirs: ka.ID()}, "b refused")
	assert.Contains(t, got, KeyMismatch{Peer: "b", Mine: ka.ID(), Theirs: kb.ID()}, "a saw the refusal")
	for _, s := range ofType[Send](got) {
		assert.Contains(t, []Kind{KindExpand, KindExpandResp}, s.Msg.Kind, "nothing but the refused expand travels")
		if s.Msg.Kind == KindExpandResp {
			assert.Empty(t, s.Msg.Results, "a refusal carries no summaries")
		}
	}
	assert.Zero(t, sb.Count("p"))
	assert.Equal(t, uint64(1), a.Stats().KeyMismatches)
	assert.Equal(t, uint64(1), b.Stats().KeyMismatches)

	// The initiator also refuses an answer under another key.
	sb.Rekey(ka)
	got = pump(t, nodes, b.Tick(t0.Add(2*time.Second)))
	require.Len(t, ofType[SessionEnded](got), 1)
	assert.NoError(t, ofType[SessionEnded](got)[0].Err)
	assert.Equal(t, 200, sb.Count("p"), "one key: the session repairs")
}

// An answer under a key other than the session's is never compared, even
// when the peer sends it unasked.
func TestAnAnswerUnderAnotherKeyEndsTheSession(t *testing.T) {
	a, _, sa, _, _ := twoSynced(t)
	ka := gset.DeriveKey([]byte("key a"))
	sa.Rekey(ka)
	out := sends(a.Tick(t0.Add(time.Second)))
	require.Len(t, out, 1)
	req := out[0].Msg
	require.Equal(t, ka.ID(), req.KeyID)
	forged := &Message{Kind: KindExpandResp, From: "b", Flags: FlagSynced, Session: req.Session, Req: req.Req,
		KeyID: ka.ID() + 1, Results: []Expansion{{Sum: gset.Summary{Count: 1}}}}
	got := a.Step(t0.Add(time.Second), forged)
	require.Len(t, ofType[SessionEnded](got), 1)
	assert.ErrorIs(t, ofType[SessionEnded](got)[0].Err, ErrKeyMismatch)
	assert.Empty(t, sends(got), "no pull or push from digests under another key")
}

// A session is not started while the replica re-keys (its key id is 0):
// its digests mix two keys.
func TestNoSessionStartsWhileReKeying(t *testing.T) {
	a, _, _, _, _ := twoSynced(t)
	r := &rekeying{Replica: a.r}
	a.r = r
	assert.Empty(t, sends(a.Tick(t0.Add(time.Second))))
	r.done = true
	assert.Len(t, sends(a.Tick(t0.Add(2*time.Second))), 1)
}

type rekeying struct {
	Replica
	done bool
}

func (r *rekeying) DigestKeyID() uint64 {
	if r.done {
		return r.Replica.DigestKeyID()
	}
	return 0
}

// A node of the version before key ids sends expands without one: no
// answer (it could not read a keyed one), a KeyMismatch to log, and no
// session of ours compares digests with it. Pulls, which compare nothing,
// are still served to it.
func TestAnUnkeyedPeerIsNeverComparedWith(t *testing.T) {
	a, _, sa, _, _ := twoSynced(t)
	old := &Message{Kind: KindExpand, From: "b", Flags: FlagSynced, Session: 9, Req: 1,
		Probes: []Probe{{Node: root, Sum: gset.Summary{Digest: 1, Count: 1}, FromStart: true}}}
	got := a.Step(t0, old)
	assert.Equal(t, []Action{KeyMismatch{Peer: "b", Mine: sa.DigestKeyID(), Theirs: 0}}, got)
	assert.Empty(t, sends(a.Tick(t0.Add(time.Second))), "no sync session with an unkeyed peer")
	assert.Empty(t, a.Urge(t0.Add(time.Second), "b"))

	pull := &Message{Kind: KindPull, From: "b", Flags: FlagSynced, Session: 9, Req: 2, Node: root.child(0)}
	for i := range gset.Fanout {
		pull.Node = root.child(i)
		out := sends(a.Step(t0, pull))
		require.Len(t, out, 1)
		assert.Zero(t, out[0].Msg.KeyID, "answered in the format it reads")
		if len(out[0].Msg.Likes) > 0 {
			return
		}
	}
	t.Fatal("no pull answer carried a's likes")
}

// A leaving node of the version before key ids is told this node holds
// nothing, in its own format: it pushes every like once, and push answers
// count only what was new, so its hand-off ends exactly.
func TestALeavingUnkeyedPeerIsAskedToPushEverything(t *testing.T) {
	a, _, _, _, _ := twoSynced(t)
	old := &Message{Kind: KindExpand, From: "b", Flags: FlagSynced | FlagLeaving, Session: 9, Req: 1,
		Probes: []Probe{{Node: root, Sum: gset.Summary{Digest: 1, Count: 1}, FromStart: true}}}
	out := sends(a.Step(t0, old))
	require.Len(t, out, 1)
	resp := out[0].Msg
	assert.Zero(t, resp.KeyID)
	require.Len(t, resp.Results, 1)
	assert.Equal(t, Expansion{}, resp.Results[0], "not equal, and nothing held")
	b := resp.Append(nil)
	assert.Zero(t, b[1]&^0x0f, "readable by the version before")
}
