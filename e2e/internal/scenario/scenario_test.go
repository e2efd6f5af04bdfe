package scenario

import (
	"net/netip"
	"strings"
	"testing"
)

// TestLoad_Corpus decodes every scenario shipped in e2e/scenarios strictly.
func TestLoad_Corpus(t *testing.T) {
	files, err := Collect([]string{"../../scenarios"})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 48 {
		t.Fatalf("found %d scenario files, want at least the 48 upstream ones", len(files))
	}
	matrices := 0
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, st := range s.Steps {
			matrices += len(st.Probes)
		}
	}
	t.Logf("%d files, %d matrices", len(files), matrices)
}

func TestLoad_RejectsUnknownFields(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/bad.yaml"
	if err := writeFile(path, "apiVersion: netpol-scenario/v1\nname: n\ncluster: {namespaces: [], pods: [], servers: []}\nsteps: []\ntypo: 1\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "typo") {
		t.Fatalf("want an unknown-field error, got %v", err)
	}
}

func TestResolve(t *testing.T) {
	ips := map[string]netip.Addr{"y/b": netip.MustParseAddr("10.244.2.11")}
	ipOf := func(k string) (netip.Addr, bool) { a, ok := ips[k]; return a, ok }
	for _, tc := range []struct{ name, in, want string }{
		{"podIP", "${podIP:y/b}", "10.244.2.11"},
		{"host", "${podHostCIDR:y/b}", "10.244.2.11/32"},
		{"net", "${podNet:y/b:24}", "10.244.2.0/24"},
		{"literal", "10.0.0.0/8", "10.0.0.0/8"},
	} {
		got, err := Resolve(tc.in, ipOf)
		if err != nil || got != tc.want {
			t.Errorf("%s: Resolve(%q) = %q, %v; want %q", tc.name, tc.in, got, err, tc.want)
		}
	}
	if _, err := Resolve("${podIP:z/z}", ipOf); err == nil {
		t.Error("unknown pod: want an error")
	}
}
