package deniedlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/e2e/internal/cluster"
	"github.com/nftpolicy/nftpolicy/e2e/internal/runner"
	"github.com/nftpolicy/nftpolicy/e2e/internal/scenario"
	agentpolicy "github.com/nftpolicy/nftpolicy/policy"
)

// auditProbePace spaces the probes of the audit phase that should give a
// record (the cells enforcement blocks): at most 8 a second for the whole
// cluster, under the default deny-log rate of 10 records a second a node,
// so the kernel's limit never swallows a record the check counts. The other
// cells go unpaced: they give no record unless the agent is wrong, and
// then the records show (the limit only drops a record once 20 were sent
// in a burst, more than a step here expects).
const auditProbePace = 125 * time.Millisecond

// AuditCheck is `e2e audit` (make audit-check): step stepIndex of the
// scenario in file, applied twice. First with every NetworkPolicy and
// ClusterNetworkPolicy of the step annotated nftpolicy.io/enforcement:
// audit: every cell must connect, and the agents must write one audit
// record or more for a cell exactly when the scenario expects enforcement
// to block it, and no drop record. Then the same policies without the
// annotation (an update that removes it): the step's expected matrix must
// hold, as in the corpus run. The step may only create policies; earlier
// steps are not applied.
func AuditCheck(ctx context.Context, cfg *cluster.Config, st *cluster.State, file string, stepIndex int, out io.Writer) (err error) {
	s, err := scenario.Load(file)
	if err != nil {
		return err
	}
	if stepIndex < 0 || stepIndex >= len(s.Steps) {
		return fmt.Errorf("%s has %d steps, no step %d", file, len(s.Steps), stepIndex+1)
	}
	step := s.Steps[stepIndex]
	audited, enforce, err := auditActions(step.Actions)
	if err != nil {
		return fmt.Errorf("%s step %d: %w", file, stepIndex+1, err)
	}
	r, err := runner.New(ctx, cfg, st, out, runner.Options{})
	if err != nil {
		return err
	}
	defer func() {
		// No ClusterNetworkPolicy of the step outlives the check.
		if cerr := errors.Join(r.DeleteClusterNetworkPolicies(context.WithoutCancel(ctx)), r.Cleanup(context.WithoutCancel(ctx))); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := r.PrepareFile(ctx, s, file); err != nil {
		return err
	}
	cells := r.Cells(s, step)
	var blocked []runner.Cell
	for _, c := range cells {
		if c.Want != '.' {
			blocked = append(blocked, c)
		}
	}
	if len(blocked) == 0 {
		return fmt.Errorf("%s step %d blocks no cell: nothing to audit", file, stepIndex+1)
	}
	keyOf := func(c runner.Cell) (string, error) {
		port, err := r.CellPort(c)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s -> %s %s/%d %s", c.Src, c.Dst, c.Probe.Protocol, port, c.Family), nil
	}

	// Audit: the step's policies, each annotated.
	if err := r.ApplyActions(ctx, s, audited); err != nil {
		return fmt.Errorf("apply the audited step: %w", err)
	}
	if err := waitAuditRecord(cfg, r, blocked[0], keyOf); err != nil {
		return err
	}
	time.Sleep(2500 * time.Millisecond) // refill the nodes' buckets (20 at the default 10/s)
	mark, err := Mark(cfg)
	if err != nil {
		return err
	}
	var notConnected []string
	for _, c := range cells {
		started := time.Now()
		if got, detail := r.ProbeCell(c); got != '.' {
			k, _ := keyOf(c)
			notConnected = append(notConnected, fmt.Sprintf("%s: %c %s", k, got, detail))
		}
		if c.Want != '.' {
			time.Sleep(auditProbePace - time.Since(started))
		}
	}
	if len(notConnected) > 0 {
		return fmt.Errorf("audit mode blocked %d of %d cells:\n  %s", len(notConnected), len(cells), strings.Join(notConnected, "\n  "))
	}
	time.Sleep(2 * time.Second) // well past the milliseconds a record takes to reach the log
	recs, err := Since(cfg, mark)
	if err != nil {
		return err
	}
	logged := map[string]Record{}
	var problems []string
	for _, rec := range recs {
		if !rec.Audit {
			problems = append(problems, "a record not marked audit: "+rec.Line)
			continue
		}
		logged[recordKey(rec)] = rec
	}
	want := map[string]bool{}
	for _, c := range blocked {
		k, err := keyOf(c)
		if err != nil {
			return err
		}
		want[k] = true
		if _, ok := logged[k]; !ok {
			problems = append(problems, "no audit record for a cell enforcement blocks: "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(logged)) {
		if !want[k] {
			problems = append(problems, "an audit record for a cell enforcement connects: "+logged[k].Line)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("audit records (%d) do not match the %d blocked cells:\n  %s", len(recs), len(blocked), strings.Join(problems, "\n  "))
	}
	fmt.Fprintf(out, "audit: %s step %d in audit mode: all %d cells connected; audit records for exactly the %d cells enforcement blocks (%d records), e.g.\n%s\n",
		s.Name, stepIndex+1, len(cells), len(blocked), len(recs), logged[slices.Sorted(maps.Keys(logged))[0]].Line)

	// Enforce: the annotation removed, the step's own expectation holds.
	if err := r.ApplyActions(ctx, s, enforce); err != nil {
		return fmt.Errorf("remove the annotations: %w", err)
	}
	ok, took, report := r.JudgeStep(ctx, s, step)
	if !ok {
		return fmt.Errorf("the annotation removed, the step's matrix did not hold after %.1fs:\n%s", took.Seconds(), report)
	}
	fmt.Fprintf(out, "audit: the annotation removed, enforcement blocks the same %d cells (the step's matrix held after %.2fs)\n", len(blocked), took.Seconds())
	return nil
}

// auditActions returns actions with every policy (NetworkPolicy or
// ClusterNetworkPolicy) annotated for audit, and the updates that remove
// the annotation again. Only createPolicy actions are taken.
func auditActions(actions []scenario.Action) (audited, enforce []scenario.Action, err error) {
	for _, a := range actions {
		if a.CreatePolicy == nil {
			return nil, nil, fmt.Errorf("the audit check takes a step that only creates policies, not %s", a.Kind())
		}
		o := a.CreatePolicy.DeepCopy()
		var meta *metav1.ObjectMeta
		switch {
		case o.NetworkPolicy != nil:
			meta = &o.NetworkPolicy.ObjectMeta
		case o.ClusterNetworkPolicy != nil:
			meta = &o.ClusterNetworkPolicy.ObjectMeta
		default:
			return nil, nil, errors.New("a createPolicy action with no policy")
		}
		if meta.Annotations == nil {
			meta.Annotations = map[string]string{}
		}
		meta.Annotations[agentpolicy.EnforcementAnnotation] = agentpolicy.EnforcementAudit
		audited = append(audited, scenario.Action{CreatePolicy: o})
		enforce = append(enforce, scenario.Action{UpdatePolicy: a.CreatePolicy.DeepCopy()})
	}
	if len(audited) == 0 {
		return nil, nil, errors.New("the step creates no policy")
	}
	return audited, enforce, nil
}

// recordKey is the cell a record is about, keyed like AuditCheck's cells.
func recordKey(rec Record) string {
	family, port := cluster.IPv4, ""
	if ap, err := netip.ParseAddrPort(rec.Dst); err == nil {
		port = fmt.Sprint(ap.Port())
		if ap.Addr().Is6() {
			family = cluster.IPv6
		}
	}
	return fmt.Sprintf("%s -> %s %s/%s %s", rec.SrcPod, rec.DstPod, rec.Protocol, port, family)
}

// waitAuditRecord probes c, a cell enforcement would block, until an
// audit record for it shows the agents have the audit tables (bounded).
func waitAuditRecord(cfg *cluster.Config, r *runner.Runner, c runner.Cell, keyOf func(runner.Cell) (string, error)) error {
	k, err := keyOf(c)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mark, err := Mark(cfg)
		if err != nil {
			return err
		}
		r.ProbeCell(c)
		time.Sleep(500 * time.Millisecond)
		recs, err := Since(cfg, mark)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.Audit && recordKey(rec) == k {
				return nil
			}
		}
	}
	return fmt.Errorf("no audit record for %s within 20s: the agents did not apply the audited policies", k)
}
