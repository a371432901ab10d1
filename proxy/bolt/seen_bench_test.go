package bolt

import (
	"fmt"
	"testing"
	"time"

	"github.com/tollgate/tollgate/proxy"
)

// BenchmarkSeenFlushes is a minute of last-seen flushes (six 10 s windows)
// of 8,000 users active throughout, as the gateway's batcher writes them
// to the store: /every writes every user every window, /resolution
// (proxy.SeenResolution) once per minute. ns/op is one such minute.
func BenchmarkSeenFlushes(b *testing.B) {
	const users, windows = 8000, 6
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("user_%08d", i)
	}
	for _, bc := range []struct {
		name string
		res  time.Duration
	}{{"every", 0}, {"resolution", proxy.SeenResolution}} {
		b.Run(bc.name, func(b *testing.B) {
			s, _ := newStore(b)
			batcher := proxy.NewTimeBatcher(s.RecordSeen, time.Hour, "last seen", nil).WithResolution(bc.res)
			at := t0()
			b.ReportAllocs()
			for b.Loop() {
				for range windows {
					at = at.Add(proxy.DefaultBatchInterval)
					for _, id := range ids {
						batcher.Seen(id, at)
					}
					if err := batcher.Flush(b.Context()); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
