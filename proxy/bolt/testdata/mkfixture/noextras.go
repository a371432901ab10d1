//go:build !extras

package main

import (
	"context"
	"time"

	"github.com/tollgate/tollgate/proxy/bolt"
)

// Extras: the tollgates before API keys and dirty marks had none.
type Extras struct{}

func writeExtras(context.Context, *bolt.Store) error { return nil }

func takeExtras(context.Context, *bolt.Store, time.Time) (*Extras, error) { return nil, nil }
