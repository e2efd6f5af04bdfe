// Package scenario reads netpol-scenario/v1 files (see
// ../shared/scenario-format.md): strict decoding, validation, expected
// matrices and the ipBlock placeholders.
package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// APIVersion is the only version understood.
const APIVersion = "netpol-scenario/v1"

// Scenario is one file.
type Scenario struct {
	APIVersion     string   `json:"apiVersion"`
	Name           string   `json:"name"`
	Description    string   `json:"description,omitempty"`
	Source         *Source  `json:"source,omitempty"`
	Tags           []string `json:"tags,omitempty"`
	IgnoreLoopback bool     `json:"ignoreLoopback,omitempty"`
	Cluster        Cluster  `json:"cluster"`
	Steps          []Step   `json:"steps"`

	File string `json:"-"`
}

// Source is provenance.
type Source struct {
	Suite string `json:"suite,omitempty"`
	Ref   string `json:"ref,omitempty"`
	Test  string `json:"test,omitempty"`
	Notes string `json:"notes,omitempty"`
}

// Cluster is the starting state.
type Cluster struct {
	Namespaces []Namespace `json:"namespaces"`
	Pods       []Pod       `json:"pods"`
	Servers    []Server    `json:"servers"`
}

// Namespace with its labels.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Pod with its labels and optional IP.
type Pod struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	IP        string            `json:"ip,omitempty"`
	// Servers replaces cluster.servers for this pod, so that a named port
	// can have a different number per pod.
	Servers []Server `json:"servers,omitempty"`
	// HostNetwork pods run on node Node (1-based, required then; no ip):
	// their Pod object has spec.hostNetwork and the node's address, and
	// their servers run in the node's network namespace.
	HostNetwork bool `json:"hostNetwork,omitempty"`
	Node        int  `json:"node,omitempty"`
}

// Key is namespace/name.
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// Server is a port every pod serves.
type Server struct {
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	Name     string `json:"name,omitempty"`
}

// Step is actions then probes.
type Step struct {
	Name    string   `json:"name,omitempty"`
	Actions []Action `json:"actions,omitempty"`
	Probes  []Probe  `json:"probes,omitempty"`
}

// ObjectRef names a namespaced object.
type ObjectRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// PodLabels is a setPodLabels action.
type PodLabels struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
}

// NamespaceList is a deleteAllPolicies action: the policies of the given
// kinds (default NetworkPolicy) in the given namespaces (default all; a
// ClusterNetworkPolicy has none).
type NamespaceList struct {
	Namespaces []string `json:"namespaces,omitempty"`
	Kinds      []string `json:"kinds,omitempty"`
}

// NamespaceRef is a deleteNamespace action.
type NamespaceRef struct {
	Namespace string `json:"namespace"`
}

// Action has exactly one field set.
type Action struct {
	CreatePolicy       *PolicyObject  `json:"createPolicy,omitempty"`
	UpdatePolicy       *PolicyObject  `json:"updatePolicy,omitempty"`
	DeletePolicy       *PolicyRef     `json:"deletePolicy,omitempty"`
	DeleteAllPolicies  *NamespaceList `json:"deleteAllPolicies,omitempty"`
	SetNamespaceLabels *Namespace     `json:"setNamespaceLabels,omitempty"`
	SetPodLabels       *PodLabels     `json:"setPodLabels,omitempty"`
	CreateNamespace    *Namespace     `json:"createNamespace,omitempty"`
	DeleteNamespace    *NamespaceRef  `json:"deleteNamespace,omitempty"`
	CreatePod          *Pod           `json:"createPod,omitempty"`
	DeletePod          *ObjectRef     `json:"deletePod,omitempty"`
}

// Kind names the set field.
func (a Action) Kind() string {
	var kinds []string
	add := func(set bool, name string) {
		if set {
			kinds = append(kinds, name)
		}
	}
	add(a.CreatePolicy != nil, "createPolicy")
	add(a.UpdatePolicy != nil, "updatePolicy")
	add(a.DeletePolicy != nil, "deletePolicy")
	add(a.DeleteAllPolicies != nil, "deleteAllPolicies")
	add(a.SetNamespaceLabels != nil, "setNamespaceLabels")
	add(a.SetPodLabels != nil, "setPodLabels")
	add(a.CreateNamespace != nil, "createNamespace")
	add(a.DeleteNamespace != nil, "deleteNamespace")
	add(a.CreatePod != nil, "createPod")
	add(a.DeletePod != nil, "deletePod")
	return strings.Join(kinds, "+")
}

// Probe is one expected matrix.
type Probe struct {
	Port     int32  `json:"port,omitempty"`
	PortName string `json:"portName,omitempty"`
	Protocol string `json:"protocol"`
	Target   string `json:"target,omitempty"`
	Expected string `json:"expected"`

	Matrix *Matrix `json:"-"`
}

// Label renders the probe for messages.
func (p Probe) Label() string {
	port := strconv.Itoa(int(p.Port))
	if p.PortName != "" {
		port = p.PortName
	}
	return fmt.Sprintf("%s/%s via %s", p.Protocol, port, p.Target)
}

// Matrix is an expected (or observed) connectivity matrix.
type Matrix struct {
	Rows, Cols []string
	Cells      [][]byte // '.' or 'X' (observed: also 'R' refused, 'E' error)
}

// ParseMatrix reads the expected block.
func ParseMatrix(s string) (*Matrix, error) {
	var m Matrix
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if m.Cols == nil {
			if f[0] != "-" {
				return nil, fmt.Errorf("matrix header must start with '-', got %q", f[0])
			}
			m.Cols = f[1:]
			continue
		}
		if len(f) != len(m.Cols)+1 {
			return nil, fmt.Errorf("matrix row %q has %d cells, want %d", f[0], len(f)-1, len(m.Cols))
		}
		row := make([]byte, len(m.Cols))
		for i, c := range f[1:] {
			if c != "." && c != "X" {
				return nil, fmt.Errorf("matrix row %q: cell %q is neither '.' nor 'X'", f[0], c)
			}
			row[i] = c[0]
		}
		m.Rows = append(m.Rows, f[0])
		m.Cells = append(m.Cells, row)
	}
	if len(m.Cols) == 0 || len(m.Rows) == 0 {
		return nil, errors.New("empty matrix")
	}
	for _, n := range append(append([]string{}, m.Rows...), m.Cols...) {
		if !strings.Contains(n, "/") {
			return nil, fmt.Errorf("matrix pod %q is not namespace/name", n)
		}
	}
	return &m, nil
}

// Load reads one file strictly and validates it.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Scenario
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.File = path
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

var protocols = map[string]bool{"TCP": true, "UDP": true, "SCTP": true}

func (s *Scenario) validate() error {
	var errs []error
	if s.APIVersion != APIVersion {
		errs = append(errs, fmt.Errorf("apiVersion %q, want %q", s.APIVersion, APIVersion))
	}
	if s.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	nss := map[string]bool{}
	for _, n := range s.Cluster.Namespaces {
		nss[n.Name] = true
	}
	seen := map[string]bool{}
	for _, p := range s.Cluster.Pods {
		if !nss[p.Namespace] {
			errs = append(errs, fmt.Errorf("pod %s: namespace not declared", p.Key()))
		}
		if seen[p.Key()] {
			errs = append(errs, fmt.Errorf("pod %s declared twice", p.Key()))
		}
		seen[p.Key()] = true
		if p.IP != "" {
			if _, err := netip.ParseAddr(p.IP); err != nil {
				errs = append(errs, fmt.Errorf("pod %s: ip: %w", p.Key(), err))
			}
		}
		if p.HostNetwork && (p.Node < 1 || p.IP != "") {
			errs = append(errs, fmt.Errorf("pod %s: a hostNetwork pod needs node (from 1) and no ip", p.Key()))
		}
		if !p.HostNetwork && p.Node != 0 {
			errs = append(errs, fmt.Errorf("pod %s: node is only for hostNetwork pods", p.Key()))
		}
	}
	checkServers := func(where string, svs []Server) {
		for _, sv := range svs {
			if !protocols[sv.Protocol] || sv.Port < 1 || sv.Port > 65535 {
				errs = append(errs, fmt.Errorf("%s: server %d/%s invalid", where, sv.Port, sv.Protocol))
			}
		}
	}
	checkServers("cluster.servers", s.Cluster.Servers)
	for _, p := range s.Cluster.Pods {
		checkServers("pod "+p.Key(), p.Servers)
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		for j, a := range st.Actions {
			if k := a.Kind(); k == "" || strings.Contains(k, "+") {
				errs = append(errs, fmt.Errorf("step %d action %d: exactly one key per action, got %q", i+1, j+1, k))
			}
			if a.DeletePolicy != nil {
				if err := a.DeletePolicy.validate(); err != nil {
					errs = append(errs, fmt.Errorf("step %d action %d: %w", i+1, j+1, err))
				}
			}
			if a.DeleteAllPolicies != nil {
				for _, k := range a.DeleteAllPolicies.Kinds {
					if k != KindNetworkPolicy && k != KindClusterNetworkPolicy {
						errs = append(errs, fmt.Errorf("step %d action %d: deleteAllPolicies kind %q", i+1, j+1, k))
					}
				}
			}
		}
		for j := range st.Probes {
			p := &st.Probes[j]
			if p.Target == "" {
				p.Target = "service-ip"
			}
			if p.Target != "service-ip" && p.Target != "pod-ip" && p.Target != "service-name" {
				errs = append(errs, fmt.Errorf("step %d probe %d: target %q", i+1, j+1, p.Target))
			}
			if !protocols[p.Protocol] {
				errs = append(errs, fmt.Errorf("step %d probe %d: protocol %q", i+1, j+1, p.Protocol))
			}
			if (p.Port == 0) == (p.PortName == "") {
				errs = append(errs, fmt.Errorf("step %d probe %d: exactly one of port and portName", i+1, j+1))
			}
			m, err := ParseMatrix(p.Expected)
			if err != nil {
				errs = append(errs, fmt.Errorf("step %d probe %d: %w", i+1, j+1, err))
			}
			p.Matrix = m
		}
	}
	return errors.Join(errs...)
}

// Collect expands files and directories (recursively, *.yaml and *.yml) in
// a stable order.
func Collect(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

var placeholder = regexp.MustCompile(`\$\{(podIP|podHostCIDR|podNet):([^}:]+)(?::(\d+))?\}`)

// ipv6PrefixLen is the prefix length of ${podNet:…:N} for a pod's IPv6
// address. Files write N for IPv4; the twin of A.B.C.D is fd00:A:B:C::D
// (e2e/README.md, "Families"), so an octet boundary N = 8k becomes the
// group boundary 16(k+1) (/16 → /48, the cluster's pod network; /24 → /64,
// a node's) and /32 the host's /128. Other lengths have no exact twin and
// are taken as written.
func ipv6PrefixLen(n int) int {
	switch {
	case n == 32:
		return 128
	case n%8 == 0 && n < 32:
		return 2*n + 16
	}
	return n
}

// Resolve replaces the ipBlock placeholders using ipOf (pod key → IP).
func Resolve(s string, ipOf func(key string) (netip.Addr, bool)) (string, error) {
	var err error
	out := placeholder.ReplaceAllStringFunc(s, func(m string) string {
		sub := placeholder.FindStringSubmatch(m)
		ip, ok := ipOf(sub[2])
		if !ok {
			err = errors.Join(err, fmt.Errorf("placeholder %s: no pod %s", m, sub[2]))
			return m
		}
		switch sub[1] {
		case "podIP":
			return ip.String()
		case "podHostCIDR":
			return netip.PrefixFrom(ip, ip.BitLen()).String()
		default:
			if sub[3] == "" {
				err = errors.Join(err, fmt.Errorf("placeholder %s needs :N", m))
				return m
			}
			bits, _ := strconv.Atoi(sub[3])
			if ip.Is6() {
				bits = ipv6PrefixLen(bits)
			}
			pfx, perr := ip.Prefix(bits)
			if perr != nil {
				err = errors.Join(err, fmt.Errorf("placeholder %s: %w", m, perr))
				return m
			}
			return pfx.String()
		}
	})
	if strings.Contains(out, "${") && err == nil {
		err = fmt.Errorf("unresolved placeholder in %q", out)
	}
	return out, err
}

// ResolvePolicy resolves the placeholders of every ipBlock in place.
func ResolvePolicy(np *networkingv1.NetworkPolicy, ipOf func(string) (netip.Addr, bool)) error {
	var errs []error
	fix := func(peers []networkingv1.NetworkPolicyPeer) {
		for i := range peers {
			b := peers[i].IPBlock
			if b == nil {
				continue
			}
			v, err := Resolve(b.CIDR, ipOf)
			errs = append(errs, err)
			b.CIDR = v
			for j := range b.Except {
				v, err := Resolve(b.Except[j], ipOf)
				errs = append(errs, err)
				b.Except[j] = v
			}
		}
	}
	for i := range np.Spec.Ingress {
		fix(np.Spec.Ingress[i].From)
	}
	for i := range np.Spec.Egress {
		fix(np.Spec.Egress[i].To)
	}
	return errors.Join(errs...)
}
