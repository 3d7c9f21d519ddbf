package breaker_test

import (
	"fmt"
	"time"

	"github.com/likesd/likesd/internal/breaker"
)

func Example() {
	cfg := breaker.DefaultConfig() // 3 failures, 1s cooldown
	b := breaker.New(cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // the caller's clock

	// Three frames in a row go unacknowledged: the third opens the breaker.
	for range 3 {
		if t, changed := b.Failure(now); changed {
			fmt.Println(t.From, "->", t.To)
		}
	}
	ok, _, _ := b.Allow(now.Add(500 * time.Millisecond))
	fmt.Println("allowed while cooling down:", ok)

	// After the cooldown one probe goes out, and its ack closes the breaker.
	ok, t, _ := b.Allow(now.Add(cfg.Cooldown))
	fmt.Println("allowed after cooldown:", ok, t.From, "->", t.To)
	t, _ = b.Success(now.Add(cfg.Cooldown + 20*time.Millisecond))
	fmt.Println(t.From, "->", t.To)

	// Output:
	// closed -> open
	// allowed while cooling down: false
	// allowed after cooldown: true open -> half-open
	// half-open -> closed
}
