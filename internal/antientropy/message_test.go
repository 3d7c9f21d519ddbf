package antientropy

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/gset"
	"github.com/likesd/likesd/internal/store"
)

func sampleMessages() []*Message {
	likes := []store.Like{{Post: "p", User: "a"}, {Post: "p", User: "b"}, {Post: "q", User: ""}}
	sum := gset.Summary{Digest: 0xdeadbeef, Count: 3}
	var children [gset.Fanout]gset.Summary
	children[3] = sum
	return []*Message{
		{Kind: KindExpand, From: "n1", Flags: FlagSynced, Session: 7, Req: 1, Probes: []Probe{
			{Node: root, Sum: sum, FromStart: true},
			{Node: treeNode(4, 65535), Sum: sum, After: "p9"},
			{Node: postNode("p", 8, 0xab), Sum: sum, FromStart: true},
		}},
		{Kind: KindExpandResp, From: "n2", Flags: FlagSynced | FlagLeaving, Session: 7, Req: 1, Results: []Expansion{
			{Equal: true},
			{Sum: sum, Posts: []store.PostSummary{{Post: "p", Summary: sum}}, More: true},
			{Sum: sum, Children: children},
		}},
		{Kind: KindExchange, From: "n1", Session: 1, Req: 2, Items: []Item{{Node: postNode("p", 64, 1<<63), Likes: likes}}},
		{Kind: KindExchangeResp, From: "n2", Session: 1, Req: 2, Likes: likes, Added: 2, Partial: []uint32{0}},
		{Kind: KindPull, From: "n1", Session: 1, Req: 3, Node: treeNode(1, 15), Cursor: store.Cursor{Started: true, Post: "p", User: "b"}},
		{Kind: KindPullResp, From: "n2", Session: 1, Req: 3, Node: treeNode(1, 15), Likes: likes, Done: true},
		{Kind: KindPush, From: "n1", Session: 1, Req: 4, Node: postNode("q", 0, 0), Likes: likes},
		{Kind: KindPushResp, From: "n2", Session: 1, Req: 4, Node: postNode("q", 0, 0), Added: 1},
		{Kind: KindExpand, From: "n1", Flags: FlagSynced, Session: 8, Req: 1, KeyID: 0x0123456789abcdef, Probes: []Probe{{Node: root, Sum: sum, FromStart: true}}},
		{Kind: KindExpandResp, From: "n2", Flags: FlagSynced, Session: 8, Req: 1, KeyID: 0xfedcba9876543210, Results: []Expansion{{Sum: sum, Children: children}}},
		{Kind: KindExpandResp, From: "n2", Session: 8, Req: 2, KeyID: 1}, // a refusal: no results
	}
}

func TestMessagesRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b := m.Append(nil)
		got, err := Decode(b)
		require.NoError(t, err, m.Kind)
		require.Equal(t, b, got.Append(nil), m.Kind)
		require.Equal(t, m.Kind, got.Kind)
		require.Equal(t, len(m.Likes), len(got.Likes), m.Kind)
		require.Equal(t, m.KeyID, got.KeyID, m.Kind)
		require.Equal(t, m.Flags, got.Flags, "the keyed bit is the encoding's, not a flag")
	}
}

// The version before key ids accepted only flags 0x0f: a keyed message,
// whose digests it could not read, is one it refuses; an unkeyed one is
// the same bytes as before.
func TestKeyedMessagesAreRefusedByTheVersionBeforeAndUnkeyedOnesUnchanged(t *testing.T) {
	const previousFlags = 0x0f
	keyed := &Message{Kind: KindExpand, From: "n1", Flags: FlagSynced, Session: 1, Req: 1, KeyID: 42}
	b := keyed.Append(nil)
	require.NotZero(t, b[1]&^previousFlags)
	plain := &Message{Kind: KindPull, From: "n1", Flags: FlagSynced | FlagLeaving, Session: 1, Req: 1, Node: root}
	require.Equal(t, []byte{byte(KindPull), byte(FlagSynced | FlagLeaving), 2, 'n', '1', 1, 1, 0, 0, 0, 0}, plain.Append(nil))
	m, err := Decode(plain.Append(nil))
	require.NoError(t, err)
	require.Zero(t, m.KeyID)

	zero := append([]byte(nil), b...) // flag set, key id 0
	copy(zero[len(zero)-9:], make([]byte, 8))
	_, err = Decode(zero)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = Decode(b[:len(b)-5]) // key id cut short
	require.ErrorIs(t, err, ErrTruncated)
}

func TestDecodeRejectsWhatAppendWouldNotProduce(t *testing.T) {
	for _, b := range [][]byte{
		nil, {0}, {byte(kindEnd), 0}, {byte(KindPull), 0x80},
		append(sampleMessages()[4].Append(nil), 0), // trailing byte
	} {
		_, err := Decode(b)
		require.Error(t, err, "%x", b)
	}
	bad := &Message{Kind: KindPull, From: "x", Node: treeNode(5, 0)} // no such level
	_, err := Decode(bad.Append(nil))
	require.ErrorIs(t, err, ErrInvalid)
}

// FuzzDecode: any input either fails to decode or decodes to a message that
// re-encodes to the same bytes; nothing panics.
func FuzzDecode(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.Append(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		require.Equal(t, b, m.Append(nil))
	})
}
