package controllers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

// recordingSyncer is the dataplane edge of the controller tests: it
// passes each ruleset to an nfttest.FakeSyncer, which applies the diff from
// the last one as the kernel syncer does (incremental syncs, the
// pointer-sharing contract), stores every ruleset synced successfully and
// signals each call on a channel. failures makes the next calls fail
// before they reach the fake. A broken contract fails the test.
type recordingSyncer struct {
	mu       sync.Mutex
	fake     *nfttest.FakeSyncer
	rulesets []*nft.Ruleset
	calls    int
	failures int   // the next this many calls fail
	failErr  error // with this error
	broken   error // the first contract violation the fake reported
	synced   chan struct{}
}

func newRecordingSyncer(t *testing.T) *recordingSyncer {
	s := &recordingSyncer{fake: nfttest.NewFakeSyncer(), synced: make(chan struct{}, 1)}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.broken != nil {
			t.Errorf("dataplane: %v", s.broken)
		}
	})
	return s
}

func (s *recordingSyncer) Sync(ctx context.Context, r *nft.Ruleset) error {
	s.mu.Lock()
	s.calls++
	var err error
	if s.failures > 0 {
		s.failures--
		err = s.failErr
		if err == nil {
			err = fmt.Errorf("injected sync failure")
		}
	} else if err = s.fake.Sync(ctx, r); err == nil {
		s.rulesets = append(s.rulesets, r)
	} else if s.broken == nil && !errors.Is(err, context.Canceled) {
		s.broken = err
	}
	s.mu.Unlock()
	select {
	case s.synced <- struct{}{}:
	default:
	}
	return err
}

func (s *recordingSyncer) failNext(n int, err error) {
	s.mu.Lock()
	s.failures, s.failErr = n, err
	s.mu.Unlock()
}

// latest is the last successfully synced ruleset, or nil.
func (s *recordingSyncer) latest() *nft.Ruleset {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rulesets) == 0 {
		return nil
	}
	return s.rulesets[len(s.rulesets)-1]
}

func (s *recordingSyncer) counts() (calls, successes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, len(s.rulesets)
}

// eventually polls cond until it returns "" (success) or timeout passes,
// then fails the test with cond's last message. wake, if not nil, makes it
// poll early (the syncer's channel).
func eventually(t *testing.T, timeout time.Duration, wake <-chan struct{}, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %s", what, timeout, msg)
		}
		select {
		case <-wake:
		case <-tick.C:
		}
	}
}

// consistently checks that cond stays "" for d.
func consistently(t *testing.T, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if msg := cond(); msg != "" {
			t.Fatalf("%s: %s", what, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isolated reports whether pod key ("ns/name") is isolated in dir in r:
// its chain exists and a dispatch map jumps to it. It is an error when only
// one of the two holds (a broken ruleset).
func isolated(r *nft.Ruleset, dir nft.Direction, key string) (bool, error) {
	if r == nil {
		return false, nil
	}
	n := nft.NamesFor(dir, key)
	_, hasChain := r.Chains[n.Chain]
	maps := []string{nft.MapIngressV4, nft.MapIngressV6}
	if dir == nft.Egress {
		maps = []string{nft.MapEgressV4, nft.MapEgressV6}
	}
	hasJump := false
	for _, m := range maps {
		if s := r.Sets[m]; s != nil {
			for _, e := range s.Elements {
				if e.Verdict.Kind == nft.VerdictJump && e.Verdict.Chain == n.Chain {
					hasJump = true
				}
			}
		}
	}
	if hasChain != hasJump {
		return false, fmt.Errorf("pod %s %v: chain present=%v but dispatch jump present=%v", key, dir, hasChain, hasJump)
	}
	return hasChain, nil
}

// allowsPeer reports whether pod key's allow-list sets for dir hold an
// element whose peer range covers ip (on any port).
func allowsPeer(r *nft.Ruleset, dir nft.Direction, key string, ip netip.Addr) bool {
	if r == nil {
		return false
	}
	n := nft.NamesFor(dir, key)
	b := ip.AsSlice()
	for _, name := range []string{n.ExactV4, n.ExactV6, n.AddrV4, n.AddrV6, n.AnyV4, n.AnyV6, n.PortsV4, n.PortsV6} {
		s := r.Sets[name]
		if s == nil {
			continue
		}
		for _, e := range s.Elements {
			if len(e.Key) == 0 || len(e.Key[0].From) != len(b) {
				continue
			}
			if bytes.Compare(e.Key[0].From, b) <= 0 && bytes.Compare(b, e.Key[0].To) <= 0 {
				return true
			}
		}
	}
	return false
}

// wantIsolation returns a cond for eventually: pod key is isolated in dir
// exactly when want.
func wantIsolation(s *recordingSyncer, dir nft.Direction, key string, want bool) func() string {
	return func() string {
		r := s.latest()
		if r == nil {
			return "no ruleset synced yet"
		}
		got, err := isolated(r, dir, key)
		if err != nil {
			return err.Error()
		}
		if got != want {
			return fmt.Sprintf("pod %s isolated for %v = %v, want %v", key, dir, got, want)
		}
		return ""
	}
}

// podListWatch is a fake list and watch of pods: List returns the pods it
// was made with, Watch the one FakeWatcher through which a test sends
// later events. It declares that it cannot stream lists, so the reflector
// lists and then watches (a real API server streams the initial list over
// the watch instead; both end in the same store).
type podListWatch struct {
	*toolscache.ListWatch
}

func (podListWatch) IsWatchListSemanticsUnSupported() bool { return true }

func newPodListWatch(pods []*corev1.Pod) (podListWatch, *watch.FakeWatcher) {
	w := watch.NewFakeWithChanSize(100, false)
	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
	for _, p := range pods {
		list.Items = append(list.Items, *p.DeepCopy())
	}
	return podListWatch{&toolscache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return list.DeepCopy(), nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return w, nil
		},
	}}, w
}

// startPodStore runs a PodStore over a fake list of pods until the test
// ends, and waits for its initial sync. The watcher sends later events.
func startPodStore(t *testing.T, pods ...*corev1.Pod) (*PodStore, *watch.FakeWatcher) {
	t.Helper()
	lw, w := newPodListWatch(pods)
	s := NewPodStore(lw)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if !toolscache.WaitForCacheSync(ctx.Done(), s.HasSynced) {
		t.Fatal("pod store did not sync")
	}
	return s, w
}

// waitStored waits until the store holds pod ns/name (want) or not.
func waitStored(t *testing.T, s *PodStore, ns, name string, want bool) {
	t.Helper()
	eventually(t, waitTimeout, nil, fmt.Sprintf("pod %s/%s stored=%v", ns, name, want), func() string {
		if got := s.Get(ns, name) != nil; got != want {
			return fmt.Sprintf("stored=%v", got)
		}
		return ""
	})
}
