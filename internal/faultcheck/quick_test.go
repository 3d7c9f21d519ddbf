package faultcheck

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLossAgainstReference checks Check's loss accounting on random small
// histories against a naive reimplementation that samples time in
// milliseconds instead of merging cutoff spans.
func TestLossAgainstReference(t *testing.T) {
	for seed := range uint64(3000) {
		rng := rand.New(rand.NewPCG(seed, 1))
		h, window := randomHistory(rng)
		got := Check(h, Config{AsyncWindow: window})
		want := referenceLoss(h, window)
		require.Equal(t, want, [5]int{got.Acked, got.Lost, got.LostAsync, got.LostCutoff, got.Lost202}, "seed %d", seed)
		require.Len(t, got.AckToKill, got.LostAsync, "seed %d", seed)
	}
}

func randomHistory(rng *rand.Rand) (History, time.Duration) {
	const nodes, horizon = 3, 400 // ms
	var h History
	h.Start = t0
	for i := range 1 + rng.IntN(20) {
		l := Like{"p", string(rune('a' + i))}
		h.Sent = append(h.Sent, l)
		for range rng.IntN(3) {
			status := []int{http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusServiceUnavailable}[rng.IntN(4)]
			h.Acks = append(h.Acks, ack(l, life(1+rng.IntN(nodes), rng.IntN(2)), status, rng.IntN(horizon)))
		}
	}
	for n := 1; n <= nodes; n++ {
		for g := range 2 {
			if rng.IntN(3) > 0 {
				e := End{Life: life(n, g), At: at(rng.IntN(horizon))}
				switch rng.IntN(3) {
				case 0:
					e.Kill = true
				case 1:
					e.Crash = true
				}
				h.Ends = append(h.Ends, e)
			}
		}
		for range rng.IntN(4) {
			from := rng.IntN(horizon)
			h.Cutoffs = append(h.Cutoffs, Cutoff{Node: n, From: at(from), To: at(from + rng.IntN(150))})
		}
	}
	h.Final = map[int]map[string][]string{}
	for n := 1; n <= nodes; n++ {
		h.Final[n] = map[string][]string{}
		for _, l := range h.Sent {
			if rng.IntN(4) == 0 {
				h.Final[n][l.Post] = append(h.Final[n][l.Post], l.User)
			}
		}
	}
	return h, time.Duration(rng.IntN(100)) * time.Millisecond
}

// referenceLoss returns acked, lost, lost async, lost cutoff, lost 202.
func referenceLoss(h History, window time.Duration) [5]int {
	held := func(l Like) bool {
		for _, byPost := range h.Final {
			for _, u := range byPost[l.Post] {
				if u == l.User {
					return true
				}
			}
		}
		return false
	}
	cutAt := func(node int, t time.Time) bool {
		for _, c := range h.Cutoffs {
			if c.Node == node && !t.Before(c.From) && !t.After(c.To) {
				return true
			}
		}
		return false
	}
	cutThrough := func(node int, from, to time.Time) bool {
		if from.After(to) {
			from = to
		}
		for t := from; !t.After(to); t = t.Add(time.Millisecond) {
			if !cutAt(node, t) {
				return false
			}
		}
		return true
	}
	var out [5]int
	for _, l := range h.Sent {
		var acks []Ack
		only202 := true
		for _, a := range h.Acks {
			if a.Like == l && a.Status != http.StatusServiceUnavailable {
				acks = append(acks, a)
				only202 = only202 && a.Status == http.StatusAccepted
			}
		}
		if len(acks) == 0 {
			continue
		}
		if !only202 {
			out[0]++
		}
		if held(l) {
			continue
		}
		allAsync, allExcused := true, true
		for _, a := range acks {
			var end *End
			for i := range h.Ends {
				if h.Ends[i].Life == a.Life {
					end = &h.Ends[i]
				}
			}
			if end == nil || !end.Kill {
				allAsync, allExcused = false, false
				continue
			}
			d := end.At.Sub(a.At)
			switch {
			case only202 || d <= window:
			case cutThrough(a.Life.Node, a.At.Add(window), end.At):
				allAsync = false
			default:
				allAsync, allExcused = false, false
			}
		}
		switch {
		case !allExcused:
			out[1]++
		case only202:
			out[4]++
		case allAsync:
			out[2]++
		default:
			out[3]++
		}
	}
	return out
}
