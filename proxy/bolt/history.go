package bolt

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tollgate/tollgate/proxy"
)

// historyRecord is the history bucket's value.
type historyRecord struct {
	V                 int       `json:"v"`
	At                time.Time `json:"at"`
	SubscriptionID    string    `json:"subscription_id"`
	Plan              string    `json:"plan,omitempty"`
	Status            string    `json:"status"`
	PeriodEnd         time.Time `json:"period_end,omitzero"`
	CancelAtPeriodEnd bool      `json:"cancel_at_period_end,omitempty"`
}

func (r *historyRecord) version() int { return r.V }

// changedSubscriptions returns the fresh subscriptions that are new or whose
// status, plan, period end or cancel-at-period-end differ from the stored
// ones.
func changedSubscriptions(old, fresh []proxy.Subscription) []proxy.Subscription {
	prev := make(map[string]*proxy.Subscription, len(old))
	for i := range old {
		prev[old[i].ID] = &old[i]
	}
	var out []proxy.Subscription
	for _, s := range fresh {
		p := prev[s.ID]
		if p == nil || p.Status != s.Status || p.Plan != s.Plan || !p.CurrentPeriodEnd.Equal(s.CurrentPeriodEnd) ||
			p.CancelAtPeriodEnd != s.CancelAtPeriodEnd || p.PausedCollection != s.PausedCollection {
			out = append(out, s)
		}
	}
	return out
}

// appendHistory records one entry per changed subscription of a customer.
func appendHistory(tx *bbolt.Tx, customerID string, at time.Time, changed []proxy.Subscription) error {
	if len(changed) == 0 {
		return nil
	}
	b, err := createdBucket(tx, bucketHistory)
	if err != nil {
		return err
	}
	for _, s := range changed {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		rec := historyRecord{V: recordVersion, At: utc(at), SubscriptionID: s.ID, Plan: s.Plan, Status: string(s.Status),
			PeriodEnd: utc(s.CurrentPeriodEnd), CancelAtPeriodEnd: s.CancelAtPeriodEnd}
		if err := putRecord(b, string(timeKey(customerID+"\x00", at, seq)), &rec); err != nil {
			return fmt.Errorf("history of %s: %w", customerID, err)
		}
	}
	return nil
}

// History returns up to limit subscription changes of a customer, newest
// first. limit <= 0 or above proxy.MaxAuditPage means proxy.MaxAuditPage.
func (s *Store) History(ctx context.Context, customerID string, limit int) ([]proxy.HistoryEntry, error) {
	var out []proxy.HistoryEntry
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		out, err = historyOf(tx, customerID, limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: history of %s: %w", customerID, err)
	}
	return out, nil
}

func historyOf(tx *bbolt.Tx, customerID string, limit int) ([]proxy.HistoryEntry, error) {
	if limit <= 0 || limit > proxy.MaxAuditPage {
		limit = proxy.MaxAuditPage
	}
	b := optionalBucket(tx, bucketHistory)
	if customerID == "" || b == nil {
		return nil, nil
	}
	prefix := []byte(customerID + "\x00")
	c := b.Cursor()
	// Start after the last key with prefix: the first key of the next
	// prefix ("cus_1\x01…"), then step back.
	var k, v []byte
	if next, _ := c.Seek([]byte(customerID + "\x01")); next == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	var out []proxy.HistoryEntry
	for ; k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, v = c.Prev() {
		var rec historyRecord
		if err := decodeRecord(v, &rec); err != nil {
			return nil, fmt.Errorf("history entry %q: %w", k, err)
		}
		out = append(out, proxy.HistoryEntry{At: rec.At, SubscriptionID: rec.SubscriptionID, Plan: rec.Plan,
			Status: proxy.SubscriptionStatus(rec.Status), PeriodEnd: rec.PeriodEnd, CancelAtPeriodEnd: rec.CancelAtPeriodEnd})
	}
	return out, nil
}
