package main

import "testing"

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 800},
		{1 << 20, 800},  // 32 MiB of headroom would be 3,200%: capped
		{8 << 20, 400},  // a small LRU: 32 MiB of headroom
		{32 << 20, 100}, // the heap may double
		{64 << 20, 50},  // from here on, half of the live heap
		{130 << 20, 50}, // a 100,000-entry LRU, as README "Scale" measured it
		{4 << 30, 50},   // however large
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}
