package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
)

// Review of #21 (the link): the reviewer's reproductions.

// L1. sendTo reads the member once and keeps it across its retry: when
// openLink stops the sender anti-entropy was using (the peer moved: the
// link to its old address is retired and a new one opened), the retry
// calls peerLink with the member as it was, at the old address. peerLink
// then puts an anti-entropy sender to that old address in the place of
// the new link's sender. The machine believes its link is open, so no
// Open comes again: every send of the link finds no sender (ResetHere,
// dropped), every probe is reported unanswered, and the peer, which
// answers, gets no frame again until it moves once more. Here the stale
// member is b at another port, as sendTo would hold it.
func TestAStaleMemberInAnAntiEntropySendDoesNotTakeTheLinksSender(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", []string{a.Addr()}, nil)
	waitReady(t, a, b)
	i := 0
	met := func() bool {
		i++
		return write(a, acks.Count(2), "p", fmt.Sprintf("u%d", i)).Met()
	}
	require.Eventually(t, met, waitLong, 50*time.Millisecond, "a's writes are met by b")

	m, ok := a.members.member("b")
	require.True(t, ok)
	stale := m
	stale.port++ // where b was before it moved, as sendTo's retry holds it
	_, _ = a.peerLink(stale)

	require.Eventually(t, met, 10*time.Second, 50*time.Millisecond,
		"b answers and is at the address the link has, yet a's frames no longer reach it: link %+v", a.writes.peer("b"))
}
