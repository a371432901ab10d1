//go:build schema1

package main

import (
	"context"

	"github.com/tollgate/tollgate/proxy/bolt"
)

// writeExtras: the tollgate of schema 1 had no API keys or dirty marks.
func writeExtras(context.Context, *bolt.Store) error { return nil }
