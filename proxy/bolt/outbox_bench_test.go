package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// BenchmarkAppendUsage writes an hour's rows for 1,000 subjects in one
// transaction (what a window's close writes), against the same number of
// bare bbolt puts of a row's size in one transaction: the outbox's cost
// beyond the commit itself (four keys a row, its counts, JSON).
//
//	go test ./proxy/bolt/ -run '^$' -bench AppendUsage -benchtime 20x
func BenchmarkAppendUsage(b *testing.B) {
	const n = 1000
	at := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	rows := make([]proxy.UsageRow, n)
	for i := range rows {
		s := proxy.Subject{Kind: proxy.SubjectUser, ID: fmt.Sprintf("user_%024d", i)}
		rows[i] = proxy.UsageRow{Subject: s, Customer: fmt.Sprintf("cus_%014d", i), EventName: "api_requests",
			Window: at, At: at.Add(time.Hour - time.Second), Value: int64(i + 1)}
	}
	b.Run("outbox", func(b *testing.B) {
		s, _ := newStore(b)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.AppendUsage(context.Background(), rows); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
	})
	b.Run("bare", func(b *testing.B) {
		s, _ := newStore(b)
		val := make([]byte, 160) // about a row's JSON
		var seq uint64
		b.ReportAllocs()
		for b.Loop() {
			err := s.db.Update(func(tx *bbolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("bench"))
				if err != nil {
					return err
				}
				for range n {
					seq++
					if err := bk.Put(binary.BigEndian.AppendUint64(nil, seq), val); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
	})
}
