package nfttest

import (
	"errors"
	"fmt"
	"sort"

	"github.com/nftpolicy/nftpolicy/nft"
)

// Validate reports every reason the kernel would reject the ruleset that
// the model can see: dangling references, keys of the wrong shape, and
// overlapping elements in an interval set (nftables refuses those).
func Validate(r *nft.Ruleset) error {
	v := table{r}
	var errs []error
	for _, name := range sortedNames(r.Sets) {
		errs = append(errs, v.validateSet(r.Sets[name])...)
	}
	for _, name := range sortedNames(r.Chains) {
		c := r.Chains[name]
		for i, rule := range c.Rules {
			if err := v.validateRule(rule); err != nil {
				errs = append(errs, fmt.Errorf("chain %s rule %d: %w", c.Name, i+1, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (r table) validateSet(s *nft.Set) []error {
	var errs []error
	for i, e := range s.Elements {
		if len(e.Key) != len(s.KeyTypes) {
			errs = append(errs, fmt.Errorf("set %s element %d: %d key fields, want %d", s.Name, i, len(e.Key), len(s.KeyTypes)))
			continue
		}
		if s.IsVerdictMap && e.Verdict.Target() != "" && r.Chains[e.Verdict.Chain] == nil {
			errs = append(errs, fmt.Errorf("set %s element %d: jump to missing chain %s", s.Name, i, e.Verdict.Chain))
		}
		for j, k := range e.Key {
			n := s.KeyTypes[j].Len()
			if len(k.From) != n || len(k.To) != n {
				errs = append(errs, fmt.Errorf("set %s element %d field %d: want %d bytes", s.Name, i, j, n))
			}
			if !s.Interval && string(k.From) != string(k.To) {
				errs = append(errs, fmt.Errorf("set %s element %d: range in a set without intervals", s.Name, i))
			}
		}
		if s.IsVerdictMap && e.Verdict.Target() != "" {
			if _, ok := r.Chains[e.Verdict.Chain]; !ok {
				errs = append(errs, fmt.Errorf("map %s element %d: jump to missing chain %s", s.Name, i, e.Verdict.Chain))
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	sorted := nft.SortedElements(s.Elements)
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			if overlaps(sorted[i].Key, sorted[j].Key) {
				errs = append(errs, fmt.Errorf("set %s: elements %s and %s overlap",
					s.Name, nft.FormatElement(s, sorted[i]), nft.FormatElement(s, sorted[j])))
			}
		}
	}
	return errs
}

// overlaps reports whether two keys share at least one value: every field's
// ranges must intersect.
func overlaps(a, b []nft.Range) bool {
	for i := range a {
		if string(a[i].To) < string(b[i].From) || string(b[i].To) < string(a[i].From) {
			return false
		}
	}
	return true
}

func (r table) validateRule(rule nft.Rule) error {
	// A membership match may look up a set or a map (the kernel tests only
	// that the key is there); a verdict-map dispatch needs a map.
	check := func(l *nft.Lookup, wantMap bool) error {
		s, ok := r.Sets[l.Set]
		if !ok {
			return fmt.Errorf("missing set %s", l.Set)
		}
		if wantMap && !s.IsVerdictMap {
			return fmt.Errorf("set %s: verdict map %v, want %v", l.Set, s.IsVerdictMap, wantMap)
		}
		if len(l.Fields) != len(s.KeyTypes) {
			return fmt.Errorf("set %s: %d fields for a %d-field key", l.Set, len(l.Fields), len(s.KeyTypes))
		}
		for i, f := range l.Fields {
			if f.Type() != s.KeyTypes[i] {
				return fmt.Errorf("set %s: field %s is %s, key wants %s", l.Set, f, f.Type(), s.KeyTypes[i])
			}
		}
		return nil
	}
	for _, m := range rule.Matches {
		if m.Lookup != nil {
			if err := check(m.Lookup, false); err != nil {
				return err
			}
		}
	}
	if rule.VerdictMap != nil {
		return check(rule.VerdictMap, true)
	}
	if rule.Log != nil {
		// A log rule sends the packet on to the next rule: it has no
		// verdict, only a limit object that must exist.
		if r.Limits[rule.Log.Limit] == nil {
			return fmt.Errorf("log rule with missing limit object %s", rule.Log.Limit)
		}
		if rule.Verdict.Kind != nft.VerdictNone {
			return errors.New("log rule with a verdict")
		}
		return nil
	}
	if rule.Verdict.Target() != "" {
		if _, ok := r.Chains[rule.Verdict.Chain]; !ok {
			return fmt.Errorf("jump to missing chain %s", rule.Verdict.Chain)
		}
	}
	if rule.Verdict.Kind == nft.VerdictNone && !rule.Counter {
		// Only a counter may stand alone: it counts and goes on.
		return errors.New("rule without verdict")
	}
	return nil
}

func sortedNames[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
