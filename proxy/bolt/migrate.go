package bolt

import (
	"bytes"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// migrateToListing builds what schema 2 added to a schema 1 store, in
// Open's transaction: the listing index of every subject a listing shows
// (users, subjects linked to a customer, comp holders) and the dashboard's
// counters from every customer's subscriptions. Subscriptions stored
// before version 2 carry no amount nor creation time: they count in the
// statuses at once and in MRR and the daily figures after their next sync.
func migrateToListing(tx *bbolt.Tx, now time.Time) error {
	seen := map[string]bool{}
	var subjects []proxy.Subject
	add := func(key string) {
		if seen[key] {
			return
		}
		seen[key] = true
		if s, err := proxy.ParseSubject(key); err == nil {
			subjects = append(subjects, s)
		}
	}
	if err := tx.Bucket([]byte(bucketUsers)).ForEach(func(k, _ []byte) error {
		add(string(proxy.SubjectUser) + ":" + string(k))
		return nil
	}); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bucketSubjects)).ForEach(func(k, _ []byte) error {
		add(string(k))
		return nil
	}); err != nil {
		return err
	}
	if b := optionalBucket(tx, bucketCompsBySubject); b != nil {
		if err := b.ForEach(func(k, _ []byte) error {
			subject, _, _ := bytes.Cut(k, []byte{0})
			add(string(subject))
			return nil
		}); err != nil {
			return err
		}
	}
	for _, s := range subjects {
		if err := reindex(tx, s, now); err != nil {
			return fmt.Errorf("index %s: %w", s, err)
		}
	}
	return tx.Bucket([]byte(bucketCustomers)).ForEach(func(k, v []byte) error {
		var rec customerRecord
		if err := decodeRecord(v, &rec); err != nil {
			return fmt.Errorf("customer %s: %w", k, err)
		}
		return countFacts(tx, fromRecords(rec.Subscriptions), 1)
	})
}
