package controllers

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/nftpolicy/nftpolicy/nft"
)

// RulesetPath is where the agent serves the ruleset it last applied
// (AppliedRuleset), on its metrics port.
const RulesetPath = "/debug/ruleset"

// AppliedRulesetDoc is the JSON document served at RulesetPath.
type AppliedRulesetDoc struct {
	Node string `json:"node"`
	// AppliedAt is when the ruleset was committed to the kernel; zero (and
	// Ruleset nil) before the first successful sync.
	AppliedAt time.Time `json:"appliedAt"`
	// Ruleset is the nft model the kernel holds as far as the agent knows
	// (the periodic read-back repairs any difference): encoding/json of
	// nft.Ruleset, byte strings in base64.
	Ruleset *nft.Ruleset `json:"ruleset"`
}

// AppliedRuleset is a Syncer that remembers the last ruleset its inner
// Syncer applied, and serves it read-only over HTTP (nftpolicy explain
// --live traces a packet through it). Rulesets are never modified once
// synced (see policy.NodeCompiler.Compile), so the handler encodes the
// remembered one without holding up the next sync.
type AppliedRuleset struct {
	Node  string
	Inner Syncer
	Now   func() time.Time

	mu   sync.Mutex
	last *nft.Ruleset
	at   time.Time
}

// Sync syncs through Inner and remembers r when that succeeds.
func (a *AppliedRuleset) Sync(ctx context.Context, r *nft.Ruleset) error {
	if err := a.Inner.Sync(ctx, r); err != nil {
		return err
	}
	a.mu.Lock()
	a.last, a.at = r, a.Now()
	a.mu.Unlock()
	return nil
}

// Last is the ruleset last applied; nil before the first successful sync.
func (a *AppliedRuleset) Last() *nft.Ruleset {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Tightened passes Inner's answer on (true when Inner cannot tell), so
// that wrapping a kernel.Syncer does not make every sync clean conntrack.
func (a *AppliedRuleset) Tightened() bool {
	if t, ok := a.Inner.(tightenReporter); ok {
		return t.Tightened()
	}
	return true
}

// ServeHTTP answers GET with the AppliedRulesetDoc; nothing else is
// accepted.
func (a *AppliedRuleset) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !getOnly(w, req) {
		return
	}
	a.mu.Lock()
	doc := AppliedRulesetDoc{Node: a.Node, AppliedAt: a.at, Ruleset: a.last}
	a.mu.Unlock()
	if doc.Ruleset == nil {
		http.Error(w, "no ruleset applied yet", http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, doc)
}

// getOnly refuses every method but GET and HEAD (the debug endpoints
// change nothing), and reports whether req may go on.
func getOnly(w http.ResponseWriter, req *http.Request) bool {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return false
	}
	return true
}

// writeJSON writes doc as the response body.
func writeJSON(w http.ResponseWriter, doc any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc) // the client sees a truncated body
}
