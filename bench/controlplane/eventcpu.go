//go:build linux

package controlplane

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/policy/synth"
)

// EventCPU is the agent's CPU time per event of one kind at one shape
// (issue 13, goal 6): each event is applied to the long-lived
// policy.NodeCompiler, compiled and synced on its own, back to back, as
// the agent does when events come further apart than its sync interval.
// Under faster churn the agent batches several events into one reconcile
// and pays less per event, so this is the upper bound.
type EventCPU struct {
	Kind   string `json:"kind"`
	What   string `json:"what"`
	Events int    `json:"events"`
	// CPUSeconds is the process's user + system time over the events,
	// WallSeconds their wall time; per 1,000 events and per event.
	CPUSeconds        float64 `json:"cpu_seconds"`
	WallSeconds       float64 `json:"wall_seconds"`
	CPUSecondsPer1000 float64 `json:"cpu_seconds_per_1000_events"`
	// CoresUnpaced is CPUSeconds / WallSeconds: what reconciling events
	// back to back costs without the agent's pacing (about one core, plus
	// the collector's work on others).
	CoresUnpaced float64 `json:"cores_unpaced"`
	// EventsPerSecondAtHalfCore is how many such events per second one
	// reconcile each would fit in half a core, the pacing's bound; faster
	// churn is batched (several events per reconcile) rather than using
	// more CPU.
	EventsPerSecondAtHalfCore float64 `json:"events_per_second_at_half_core"`
	OpsPerEvent               float64 `json:"ops_per_event"`
}

// EventCPUShape is results.json's `event_cpu` entry for one shape.
type EventCPUShape struct {
	Shape    string     `json:"shape"`
	Pods     int        `json:"pods"`
	Policies int        `json:"policies"`
	Kinds    []EventCPU `json:"kinds"`
}

// MeasureEventCPU starts the agent's state from snap (one full sync into a
// fresh namespace), then measures events of each kind: pod events (the
// churn peer appears and disappears in turn) and policy events (np-0,
// which selects the local pod-0, moves its TCP port 8080 to 8081 and
// back: pod-0's allow-list loses and gains elements).
func MeasureEventCPU(shape synth.Shape, events int) (EventCPUShape, error) {
	out := EventCPUShape{Shape: shape.String(), Pods: shape.Pods, Policies: shape.Policies}
	snap := synth.Snapshot(shape)
	s, cl, cur, closeNS, err := startAgent(snap)
	if err != nil {
		return out, err
	}
	defer closeNS()
	peer := synth.ChurnPeer(shape)
	np0 := synth.Policy(0, shape.Namespaces)
	moved := np0.DeepCopy()
	port := intstr.FromInt32(8081)
	moved.Spec.Ingress[0].Ports[0].Port = &port
	kinds := []struct {
		kind, what string
		apply      func(i int)
	}{
		{"pod", "a remote frontend pod admitted by one local pod appears, then disappears (synth.ChurnPeer)", func(i int) {
			if i%2 == 0 {
				cl.SetPod(&peer)
			} else {
				cl.DeletePod(peer.Namespace, peer.Name)
			}
		}},
		{"policy", "np-0, selecting the local pod-0, moves its TCP port 8080 to 8081, then back", func(i int) {
			if i%2 == 0 {
				cl.SetPolicy(moved)
			} else {
				cl.SetPolicy(np0)
			}
		}},
	}
	for _, k := range kinds {
		runtime.GC()
		ops := 0
		wall0, cpu0 := time.Now(), cpuTime()
		for i := range events {
			k.apply(i)
			next, _ := cl.Compile()
			ops += len(nft.Diff(cur, next))
			if err := s.Sync(context.Background(), next); err != nil {
				return out, fmt.Errorf("%s event %d: %w", k.kind, i, err)
			}
			cur = next
		}
		cpu, wall := (cpuTime() - cpu0).Seconds(), time.Since(wall0).Seconds()
		if ops == 0 {
			return out, fmt.Errorf("%s events changed nothing in the ruleset", k.kind)
		}
		e := EventCPU{Kind: k.kind, What: k.what, Events: events, CPUSeconds: cpu, WallSeconds: wall,
			CPUSecondsPer1000: cpu / float64(events) * 1000, CoresUnpaced: cpu / wall,
			OpsPerEvent: float64(ops) / float64(events)}
		if cpu > 0 {
			e.EventsPerSecondAtHalfCore = 0.5 / (cpu / float64(events))
		}
		out.Kinds = append(out.Kinds, e)
	}
	if err := s.Verify(context.Background()); err != nil {
		return out, fmt.Errorf("after the events: %w", err)
	}
	return out, nil
}
