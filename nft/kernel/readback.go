//go:build linux

package kernel

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/nft"
)

// compareKernel lists how the kernel table differs from model: missing or
// extra chains and sets, base chain hooks, each rule's expressions and
// comment, and set elements (key, range end, verdict, comment). Chain and
// set comments are not compared: google/nftables does not decode them.
func compareKernel(ctx context.Context, cc *nftables.Conn, model *nft.Ruleset) ([]string, error) {
	exists, err := tableExists(cc)
	if err != nil {
		return nil, err
	}
	if !exists {
		return []string{"table is missing"}, nil
	}
	chainDiffs, err := compareChains(ctx, cc, model)
	if err != nil {
		return nil, err
	}
	setDiffs, err := compareSets(ctx, cc, model)
	if err != nil {
		return nil, err
	}
	limitDiffs, err := compareLimits(cc, model)
	if err != nil {
		return nil, err
	}
	return slices.Concat(chainDiffs, setDiffs, limitDiffs), nil
}

// compareLimits lists missing, unexpected and changed limit objects.
func compareLimits(cc *nftables.Conn, model *nft.Ruleset) ([]string, error) {
	objs, err := cc.GetNamedObjects(ourTable())
	if err != nil {
		return nil, fmt.Errorf("list objects: %w", err)
	}
	var diffs []string
	seen := map[string]bool{}
	for _, o := range objs {
		no, ok := o.(*nftables.NamedObj)
		if !ok {
			continue
		}
		seen[no.Name] = true
		ml, ok := model.Limits[no.Name]
		if !ok {
			diffs = append(diffs, "unexpected object "+no.Name)
			continue
		}
		want := renderLimit(ourTable(), ml).Obj.(*expr.Limit)
		if got, ok := no.Obj.(*expr.Limit); !ok || *got != *want {
			diffs = append(diffs, fmt.Sprintf("limit %s: kernel %+v, want %+v", no.Name, no.Obj, want))
		}
	}
	for name := range model.Limits {
		if !seen[name] {
			diffs = append(diffs, "missing limit "+name)
		}
	}
	return diffs, nil
}

func compareChains(ctx context.Context, cc *nftables.Conn, model *nft.Ruleset) ([]string, error) {
	chains, err := listChains(cc)
	if err != nil {
		return nil, err
	}
	var diffs []string
	seen := map[string]bool{}
	for _, kc := range chains {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		seen[kc.Name] = true
		mc, ok := model.Chains[kc.Name]
		if !ok {
			diffs = append(diffs, "unexpected chain "+kc.Name)
			continue
		}
		if d := compareHook(kc, mc); d != "" {
			diffs = append(diffs, d)
		}
		d, err := compareRules(cc, kc, mc)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, d...)
	}
	for name := range model.Chains {
		if !seen[name] {
			diffs = append(diffs, "missing chain "+name)
		}
	}
	return diffs, nil
}

func compareHook(kc *nftables.Chain, mc *nft.Chain) string {
	if (kc.Hooknum != nil) != (mc.Hook != nil) {
		return "chain " + mc.Name + ": base chain mismatch"
	}
	if mc.Hook == nil {
		return ""
	}
	policy := nftables.ChainPolicyAccept
	if kc.Policy != nil {
		policy = *kc.Policy
	}
	if *kc.Hooknum != hookNums[mc.Hook.Name] || int(*kc.Priority) != mc.Hook.Priority || policy != policyOf(mc.Hook.Policy) {
		return "chain " + mc.Name + ": hook, priority or policy differs"
	}
	return ""
}

func compareRules(cc *nftables.Conn, kc *nftables.Chain, mc *nft.Chain) ([]string, error) {
	t := ourTable()
	got, err := cc.GetRules(t, &nftables.Chain{Table: t, Name: kc.Name})
	if err != nil {
		return nil, fmt.Errorf("list rules of %s: %w", kc.Name, err)
	}
	if len(got) != len(mc.Rules) {
		return []string{fmt.Sprintf("chain %s has %d rules, want %d", mc.Name, len(got), len(mc.Rules))}, nil
	}
	noAnon := func(s *nftables.Set, _ []nftables.SetElement) error { s.Name = "__set%d"; return nil }
	var diffs []string
	for i, r := range mc.Rules {
		want, err := renderRule(t, mc.Name, r, noAnon)
		if err != nil {
			return nil, err
		}
		if g, w := exprString(got[i].Exprs), exprString(want.Exprs); g != w {
			diffs = append(diffs, fmt.Sprintf("chain %s rule %d: kernel %s, want %s", mc.Name, i+1, g, w))
		}
		if g, _ := userdata.GetString(got[i].UserData, userdata.TypeComment); g != r.Comment {
			diffs = append(diffs, fmt.Sprintf("chain %s rule %d: comment %q, want %q", mc.Name, i+1, g, r.Comment))
		}
	}
	return diffs, nil
}

// exprString renders expressions for comparison, with the per-batch names
// and ids of anonymous sets blanked out and counters' values zeroed. Byteorder expressions are left out
// because google/nftables v0.3.0 does not decode them (it drops them from
// what it reads back); nft --debug=netlink shows they are in the kernel.
func exprString(exprs []expr.Any) string {
	var parts []string
	for _, e := range exprs {
		if _, ok := e.(*expr.Byteorder); ok {
			continue
		}
		if _, ok := e.(*expr.Counter); ok {
			// Its packets and bytes are state, not definition.
			e = &expr.Counter{}
		}
		if l, ok := e.(*expr.Lookup); ok && strings.HasPrefix(l.SetName, "__set") {
			c := *l
			c.SetName, c.SetID = "__set", 0
			e = &c
		} else if l, ok := e.(*expr.Lookup); ok {
			c := *l
			c.SetID = 0
			e = &c
		}
		parts = append(parts, fmt.Sprintf("%s%+v", reflect.TypeOf(e).Elem().Name(), reflect.ValueOf(e).Elem().Interface()))
	}
	return strings.Join(parts, " ")
}

func compareSets(ctx context.Context, cc *nftables.Conn, model *nft.Ruleset) ([]string, error) {
	t := ourTable()
	sets, err := cc.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	var diffs []string
	seen := map[string]bool{}
	for _, ks := range sets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if ks.Anonymous {
			continue
		}
		seen[ks.Name] = true
		ms, ok := model.Sets[ks.Name]
		if !ok {
			diffs = append(diffs, "unexpected set "+ks.Name)
			continue
		}
		if ks.IsMap != ms.IsVerdictMap || ks.Interval != ms.Interval || ks.Concatenation != (len(ms.KeyTypes) > 1) {
			diffs = append(diffs, "set "+ms.Name+": flags differ")
			continue
		}
		d, err := compareElements(cc, ks, ms)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, d...)
	}
	for name := range model.Sets {
		if !seen[name] {
			diffs = append(diffs, "missing set "+name)
		}
	}
	return diffs, nil
}

func compareElements(cc *nftables.Conn, ks *nftables.Set, ms *nft.Set) ([]string, error) {
	got, err := cc.GetSetElements(ks)
	if err != nil {
		return nil, fmt.Errorf("list elements of %s: %w", ms.Name, err)
	}
	want, err := renderElements(ms, ms.Elements)
	if err != nil {
		return nil, err
	}
	g, w := elementStrings(got, true), elementStrings(want, false)
	if g == w {
		return nil, nil
	}
	return []string{fmt.Sprintf("set %s: kernel elements {%s}, want {%s}", ms.Name, g, w)}, nil
}

// elementStrings renders elements sorted, each as elementString does.
func elementStrings(elems []nftables.SetElement, fromKernel bool) string {
	out := make([]string, len(elems))
	for i, e := range elems {
		out[i] = elementString(e, fromKernel)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// elementString renders one element as key[-end][ end][ verdict][ comment],
// the same for an element read from the kernel as for one rendered from
// the model. Verdicts read from the kernel arrive as raw
// NFTA_DATA_VERDICT attributes.
func elementString(e nftables.SetElement, fromKernel bool) string {
	s := hex.EncodeToString(e.Key)
	if len(e.KeyEnd) > 0 {
		s += "-" + hex.EncodeToString(e.KeyEnd)
	}
	if e.IntervalEnd {
		s += " end"
	}
	switch {
	case fromKernel && len(e.Val) > 0:
		s += " " + decodeVerdict(e.Val)
	case e.VerdictData != nil:
		s += fmt.Sprintf(" %d:%s", int32(e.VerdictData.Kind), e.VerdictData.Chain)
	}
	if e.Comment != "" {
		s += fmt.Sprintf(" %q", e.Comment)
	}
	return s
}

func decodeVerdict(b []byte) string {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "undecodable"
	}
	ad.ByteOrder = binary.BigEndian
	var code int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	return fmt.Sprintf("%d:%s", code, chain)
}
