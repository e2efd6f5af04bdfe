// Package results writes bench/results.json, the one file every benchmark
// command reports to: a JSON object whose top-level keys belong each to the
// command that produces them (nftbench: control_plane; clusterbench:
// datapath and programming_latency). A command replaces only its own keys,
// so the figures of different runs and machines stand side by side.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// DefaultPath is the results file relative to the repository root, where
// the make targets run the commands.
const DefaultPath = "bench/results.json"

// WriteKeys replaces the given top-level keys of the results file at path
// with the JSON of their values and keeps every other key as it was. A
// missing file is created; a file that is not a JSON object is an error
// and left alone, so that no other command's figures are lost.
func WriteKeys(path string, keys map[string]any) error {
	doc := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	for k, v := range keys {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		doc[k] = b
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// LoadAverage is /proc/loadavg's 1, 5 and 15 minute averages, or "" where
// it cannot be read: above the CPU count, other work shared the machine
// during a run, which every figure records at its start and end.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
