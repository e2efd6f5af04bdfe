package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/nft"
)

type errSyncer struct{ err error }

func (s errSyncer) Sync(context.Context, *nft.Ruleset) error { return s.err }

func TestAppliedRuleset(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	inner := &errSyncer{}
	a := &AppliedRuleset{Node: "node-1", Inner: inner, Now: func() time.Time { return at }}
	get := func(method string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest(method, RulesetPath, nil))
		return rec
	}
	if rec := get(http.MethodGet); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("before any sync: status %d, want 503", rec.Code)
	}

	applied := nft.NewSkeleton()
	applied.AddIsolatedEndpoint(nft.Ingress, "x/a", []netip.Addr{netip.MustParseAddr("10.244.1.10")},
		nft.AllowList{Ports: []nft.PortAllow{{Peer: nft.Addr(netip.MustParseAddr("10.244.2.7")), Proto: nft.ProtoTCP, Ports: nft.Port(80)}}})
	if err := a.Sync(context.Background(), applied); err != nil {
		t.Fatal(err)
	}
	// A failed sync leaves the kernel, and so the served ruleset, as it was.
	inner.err = errors.New("netlink: EPERM")
	if err := a.Sync(context.Background(), nft.NewSkeleton()); err == nil {
		t.Fatal("the inner error was swallowed")
	}

	rec := get(http.MethodGet)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var doc AppliedRulesetDoc
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Node != "node-1" || !doc.AppliedAt.Equal(at) {
		t.Errorf("node %q applied at %v, want node-1 at %v", doc.Node, doc.AppliedAt, at)
	}
	if diff := cmp.Diff(applied.Dump(), doc.Ruleset.Dump()); diff != "" {
		t.Errorf("served ruleset differs from the applied one (-applied +served):\n%s", diff)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		if rec := get(m); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405 (read-only)", m, rec.Code)
		}
	}
}
