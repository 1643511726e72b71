package weirtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// DuckDBNodeVersion is the DuckDB for Node package the docs' queries are
// checked with.
const DuckDBNodeVersion = "1.5.6-r.1"

var (
	duckOnce sync.Once
	duckDir  string
	duckErr  error
)

// duckRunner reads SQL statements (a JSON list) on stdin and prints the
// rows of the last one as JSON.
const duckRunner = `import { DuckDBInstance } from '@duckdb/node-api';
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const stmts = JSON.parse(Buffer.concat(chunks).toString());
const db = await DuckDBInstance.create(':memory:');
const conn = await db.connect();
let rows = [];
for (const s of stmts) rows = (await conn.runAndReadAll(s)).getRowObjectsJson();
process.stdout.write(JSON.stringify(rows));
`

// DuckDB runs SQL with DuckDB for Node (@duckdb/node-api), installed with
// npm on first use into the user's cache directory (a few seconds, then
// cached). Node.js and npm must be installed; CI installs them (.ci/run).
// It returns the rows of the last statement, values as DuckDB's JSON
// conversion gives them (big integers as strings).
func DuckDB(t testing.TB, stmts ...string) []map[string]any {
	t.Helper()
	duckOnce.Do(func() { duckDir, duckErr = installDuckDB() })
	if duckErr != nil {
		t.Fatal(duckErr)
	}
	in, err := json.Marshal(stmts)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(duckDir, "run.mjs"))
	cmd.Dir = duckDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s\nSQL:\n%s", err, stderr.String(), stmts[len(stmts)-1])
	}
	var rows []map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatalf("duckdb output %q: %v", out, err)
	}
	return rows
}

func installDuckDB() (string, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return "", fmt.Errorf("node is not installed; install Node.js and npm (apt-get install nodejs npm; .ci/run does): %w", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "weir-test", "duckdb-node-"+DuckDBNodeVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api", "package.json")); err != nil {
		if _, err := exec.LookPath("npm"); err != nil {
			return "", fmt.Errorf("npm is not installed; install Node.js and npm (apt-get install nodejs npm; .ci/run does): %w", err)
		}
		// Install beside the final place and rename, so that concurrent
		// test binaries never see half an installation.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return "", err
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "@duckdb/node-api@"+DuckDBNodeVersion)
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("npm install @duckdb/node-api@%s: %v\n%s", DuckDBNodeVersion, err, out)
		}
		if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
			if _, statErr := os.Stat(dir); statErr != nil {
				return "", err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "run.mjs"), []byte(duckRunner), 0o644); err != nil {
		return "", err
	}
	return dir, nil
}
