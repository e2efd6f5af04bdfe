// Package manifest reads how the released manifest (dist/install.yaml)
// starts the agent, so that the local e2e cluster runs the agent with the
// very arguments and environment that users install, and the manifest
// cannot drift from what the e2e suite tests.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Names in config/agent/daemonset.yaml.
const (
	// DaemonSetName is the agent's DaemonSet.
	DaemonSetName = "nftpolicy-agent"
	// ContainerName is the agent's container in it.
	ContainerName = "agent"
	// ImageBinary is the agent's path inside the image (the Dockerfile's
	// ENTRYPOINT); the container's command must be this or empty.
	ImageBinary = "/nftpolicy"
)

// AgentCommand returns how the DaemonSet in installYAML starts the agent:
//
//   - args: the arguments after the binary (the container's command after
//     ImageBinary, then its args), unexpanded: they may hold Kubernetes
//     $(VAR) references, which Expand resolves. Run them as
//     exec.Command(yourBinary, expanded...), or shell-quote each one: a
//     shell would read $(VAR) as command substitution.
//   - env: the container's environment in order: "NAME" for a variable whose
//     value comes from the node or the API (downward API, secrets, config
//     maps: the caller provides it, e.g. NODE_NAME = the node's name), and
//     "NAME=value" for a literal value, to be passed as is.
func AgentCommand(installYAML []byte) (args []string, env []string, err error) {
	c, err := agentContainer(installYAML)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case len(c.Command) == 0:
	case c.Command[0] == ImageBinary:
		args = append(args, c.Command[1:]...)
	default:
		return nil, nil, fmt.Errorf("manifest: container %q runs %q, not the agent binary %s", ContainerName, c.Command[0], ImageBinary)
	}
	args = append(args, c.Args...)
	if len(c.EnvFrom) > 0 {
		return nil, nil, fmt.Errorf("manifest: container %q uses envFrom, which AgentCommand cannot resolve", ContainerName)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil:
			env = append(env, e.Name)
		default:
			env = append(env, e.Name+"="+e.Value)
		}
	}
	if args == nil {
		args = []string{}
	}
	return args, env, nil
}

// agentContainer finds the agent container of the agent DaemonSet.
func agentContainer(installYAML []byte) (*corev1.Container, error) {
	ds, err := findDaemonSet(installYAML, DaemonSetName)
	if err != nil {
		return nil, err
	}
	for i := range ds.Spec.Template.Spec.Containers {
		if c := &ds.Spec.Template.Spec.Containers[i]; c.Name == ContainerName {
			return c, nil
		}
	}
	return nil, fmt.Errorf("manifest: DaemonSet %s has no container %q", DaemonSetName, ContainerName)
}

// findDaemonSet decodes the multi-document YAML and returns the one
// DaemonSet called name.
func findDaemonSet(installYAML []byte, name string) (*appsv1.DaemonSet, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(installYAML)))
	var found *appsv1.DaemonSet
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("manifest: read YAML: %w", err)
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("manifest: decode YAML document: %w", err)
		}
		if meta.APIVersion != "apps/v1" || meta.Kind != "DaemonSet" || meta.Metadata.Name != name {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("manifest: two DaemonSets called %s", name)
		}
		found = &appsv1.DaemonSet{}
		if err := yaml.UnmarshalStrict(doc, found); err != nil {
			return nil, fmt.Errorf("manifest: decode DaemonSet %s: %w", name, err)
		}
	}
	if found == nil {
		return nil, fmt.Errorf("manifest: no apps/v1 DaemonSet called %s", name)
	}
	return found, nil
}

// Expand resolves Kubernetes $(VAR) references in args the way the kubelet
// does for container args: $(NAME) becomes values[NAME] and $$ an escaped
// $. Unlike the kubelet, which leaves unknown references as they are,
// Expand fails on a reference to a name missing from values, so that a
// variable the caller forgot to provide is an error, not a literal string.
func Expand(args []string, values map[string]string) ([]string, error) {
	out := make([]string, len(args))
	var errs []error
	for i, a := range args {
		var b strings.Builder
		for j := 0; j < len(a); j++ {
			if a[j] != '$' || j+1 == len(a) {
				b.WriteByte(a[j])
				continue
			}
			switch a[j+1] {
			case '$':
				b.WriteByte('$')
				j++
			case '(':
				end := strings.IndexByte(a[j+2:], ')')
				if end < 0 {
					b.WriteString(a[j:]) // no closing paren: literal, as in the kubelet
					j = len(a)
					continue
				}
				name := a[j+2 : j+2+end]
				v, ok := values[name]
				if !ok {
					errs = append(errs, fmt.Errorf("argument %q: no value for $(%s)", a, name))
				}
				b.WriteString(v)
				j += 2 + end
			default:
				b.WriteByte('$')
			}
		}
		out[i] = b.String()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return out, nil
}
