package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runWeir(args ...string) (string, error) {
	cmd := rootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestCheckPipelines runs `weir check pipelines` on the repository's
// pipelines and on a directory with a broken file.
func TestCheckPipelines(t *testing.T) {
	out, err := runWeir("check", "pipelines", "../../pipelines")
	if err != nil || !strings.Contains(out, "pipeline files OK") {
		t.Fatalf("repository pipelines: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "default.yaml"), []byte("budget:\n  max_series: 10\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "team-a.yaml"), []byte("relabel:\n  - source_labels: [a]\n    regex: '(('\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = runWeir("check", "pipelines", dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "team-a.yaml")+":2: relabel rule 1:") {
		t.Fatalf("broken pipeline: %v", err)
	}
}
