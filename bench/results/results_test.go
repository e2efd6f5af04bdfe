package results

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteKeys_ReplacesOnlyItsOwnKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := WriteKeys(path, map[string]any{"control_plane": map[string]int{"reps": 5}}); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeys(path, map[string]any{"datapath": []int{1, 2}, "programming_latency": "first"}); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeys(path, map[string]any{"programming_latency": "second"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"control_plane":       map[string]any{"reps": 5.0},
		"datapath":            []any{1.0, 2.0},
		"programming_latency": "second",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	if b[len(b)-1] != '\n' {
		t.Error("the file does not end in a newline")
	}
}

func TestWriteKeys_LeavesAFileThatIsNotAnObjectAlone(t *testing.T) {
	for _, content := range []string{"{\"datapath\": ", "[1, 2]"} {
		path := filepath.Join(t.TempDir(), "results.json")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteKeys(path, map[string]any{"control_plane": 1}); err == nil {
			t.Errorf("%q: no error", content)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("%q: the file became %q", content, b)
		}
	}
}
