package cluster

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/likesd/likesd/internal/acks"
	"github.com/likesd/likesd/internal/link"
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

// stallingWriter holds the first log line that contains match until
// release is closed: a log sink that stalls (a full pipe to a collector).
type stallingWriter struct {
	match   string
	once    sync.Once
	stalled chan struct{}
	release chan struct{}
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), w.match) {
		w.once.Do(func() { close(w.stalled); <-w.release })
	}
	return len(p), nil
}

// L2. writes.update carries the machine's actions under carryMu, and the
// next update waits for carryMu holding w.mu, which every write takes. The
// Note actions are logged there: a log line that stalls (the peer's link
// going down is logged at warn) stops every write of the node, w=1 ones
// included, within a tick. report says breaker transitions are logged
// without w.mu "so a slow log never stalls writes"; on main the same line
// was logged on the peer's own sender goroutine, holding nothing.
func TestAStalledLogLineDoesNotStallWrites(t *testing.T) {
	sw := &stallingWriter{match: link.NoteDown, stalled: make(chan struct{}), release: make(chan struct{})}
	a := startNode(t, "a", nil, func(c *Config) { c.Logger = zerolog.New(sw).Level(zerolog.InfoLevel) })
	b := startNode(t, "b", []string{a.Addr()}, nil)
	t.Cleanup(func() { close(sw.release) }) // before the nodes' (last in, first out)
	waitReady(t, a, b)
	require.Eventually(t, func() bool { return write(a, acks.Count(2), "p", "warm").Replicas == 2 },
		waitLong, 10*time.Millisecond, "a's link to b is up")

	crash(t, b)
	// Frames to b until a send fails and a's link to b goes down.
	i := 0
	require.Eventually(t, func() bool {
		select {
		case <-sw.stalled:
			return true
		default:
		}
		i++
		like(a, "p", fmt.Sprint("down", i))
		return false
	}, waitLong, 10*time.Millisecond, "a's link to b goes down")
	time.Sleep(100 * time.Millisecond) // a few ticks of writes.run
	done := make(chan struct{})
	go func() {
		defer close(done)
		like(a, "p", "while-the-log-stalls")
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "a w=1 write waited 5s behind a log line")
	}
}
