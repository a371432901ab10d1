//go:build schema1

package dump

import (
	"context"
	"time"
)

// Extras: the tollgates before API keys and dirty marks had none.
type Extras struct{}

func takeExtras(context.Context, Store, time.Time) (*Extras, error) { return nil, nil }
