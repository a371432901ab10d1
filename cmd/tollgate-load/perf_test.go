package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoundOrder(t *testing.T) {
	// tuned, pooled, the first store's tollgate with four targets that the
	// second store's browser splits (-stores bolt,postgres), and an -also
	// build.
	targets := []perfTarget{{pid: 10}, {pid: 20}, {pid: 30}, {pid: 30}, {pid: 40}, {pid: 30}, {pid: 30}, {pid: 50}}
	for _, tc := range []struct {
		round int
		fixed bool
		want  []int
	}{
		{0, false, []int{0, 1, 2, 3, 5, 6, 4, 7}},
		{1, false, []int{1, 2, 3, 5, 6, 4, 7, 0}},
		{2, false, []int{2, 3, 5, 6, 4, 7, 0, 1}},
		{4, false, []int{7, 0, 1, 2, 3, 5, 6, 4}},
		{5, false, []int{0, 1, 2, 3, 5, 6, 4, 7}},
		{3, true, []int{0, 1, 2, 3, 4, 5, 6, 7}},
	} {
		if diff := cmp.Diff(tc.want, roundOrder(targets, tc.round, tc.fixed)); diff != "" {
			t.Errorf("round %d, fixed %v (-want +got):\n%s", tc.round, tc.fixed, diff)
		}
	}
}

// Over as many rounds as there are processes, each process goes first
// once, and every round loads every target once.
func TestRoundOrderEachProcessLeadsOnce(t *testing.T) {
	targets := []perfTarget{{pid: 1}, {pid: 2}, {pid: 3}, {pid: 3}, {pid: 3}, {pid: 3}}
	led := map[int]int{}
	for r := range 3 {
		order := roundOrder(targets, r, false)
		seen := map[int]bool{}
		for _, i := range order {
			seen[i] = true
		}
		if len(order) != len(targets) || len(seen) != len(targets) {
			t.Fatalf("round %d: %v does not load every target once", r, order)
		}
		led[targets[order[0]].pid]++
	}
	if diff := cmp.Diff(map[int]int{1: 1, 2: 1, 3: 1}, led); diff != "" {
		t.Errorf("rounds led by each process (-want +got):\n%s", diff)
	}
}
