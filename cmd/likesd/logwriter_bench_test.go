package main

import (
	"os"
	"testing"

	"github.com/rs/zerolog"
)

// An access-log-shaped line per op, from parallel goroutines, to a file
// (/dev/null: the syscall, not the disk): direct against batched.
func BenchmarkLogLine(b *testing.B) {
	line := func(b *testing.B, log zerolog.Logger) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				log.Info().Str("req_id", "0123456789abcdef").Str("method", "POST").Str("path", "/v1/posts/p1/likes").
					Str("route", "/v1/posts/{post}/likes").Int("status", 201).Int("bytes", 110).Str("remote", "127.0.0.1:40000").Msg("request")
			}
		})
	}
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.Run("direct", func(b *testing.B) { line(b, zerolog.New(f).With().Timestamp().Logger()) })
	b.Run("batched", func(b *testing.B) {
		w := newBatchWriter(f)
		defer w.Close()
		line(b, zerolog.New(w).With().Timestamp().Logger())
	})
}
