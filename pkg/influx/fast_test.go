package influx

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/influxdata/line-protocol-corpus/lpcorpus"
)

// outcome renders everything Parse produces, for comparing the fast path
// with the reference decoder.
func outcome(b *Batch, err error) string {
	var sb strings.Builder
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) {
			return "non-ParseError: " + err.Error()
		}
		fmt.Fprintf(&sb, "error line %d column %d: %s\n", pe.Line, pe.Column, pe.Error())
		return sb.String()
	}
	fmt.Fprintf(&sb, "lines %d dropped %d\n", b.Lines, b.StringFieldsDropped)
	for _, ts := range b.Series {
		fmt.Fprintf(&sb, "%q %v type %d\n", ts.Labels, ts.Samples, ts.Metadata.Type)
	}
	return sb.String()
}

var equivalenceOptions = []Options{
	{},
	{StringFields: StringsAsInfo, KeepNames: true, DatabaseLabel: "db", Database: "x"},
	{Precision: Second},
	{Precision: Hour},
}

// checkEquivalent parses data with Parse (fast path first) and with the
// reference decoder alone, and fails if anything differs.
func checkEquivalent(t *testing.T, data []byte) {
	t.Helper()
	for _, o := range equivalenceOptions {
		o.Now = time.Unix(1_700_000_000, 123_456_789)
		var fast, slow Batch
		fastErr := fast.Parse(data, &o)
		slow.Reset()
		slowErr := slow.parseSlow(data, 0, &o)
		if f, s := outcome(&fast, fastErr), outcome(&slow, slowErr); f != s {
			t.Fatalf("input %q options %+v:\nfast path:\n%s\nreference decoder:\n%s", data, o, f, s)
		}
		// Parse promises normalised series: Normalize must find nothing
		// to change or refuse.
		for _, ts := range fast.Series {
			if fastErr != nil {
				break
			}
			n := ts
			n.Labels = slices.Clone(ts.Labels)
			if err := n.Normalize(); err != nil || !slices.Equal(n.Labels, ts.Labels) {
				t.Fatalf("input %q options %+v: series %q is not normalised: %v, normalised %q", data, o, ts.Labels, err, n.Labels)
			}
		}
	}
}

func corpusInputs(t testing.TB) [][]byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/influxdata/line-protocol-corpus").Output()
	if err != nil {
		t.Fatalf("locating the line-protocol corpus: %v", err)
	}
	c, err := lpcorpus.ReadCorpusJSON(filepath.Join(strings.TrimSpace(string(out)), "corpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	var inputs [][]byte
	for _, e := range c.Decode {
		inputs = append(inputs, e.Input.Text)
	}
	return inputs
}

var handWritten = []string{
	"cpu,host=a,region=eu usage_user=1.5,usage_idle=98i,ok=true,up=5u 1700000000000000000\n",
	"cpu usage=1\ncpu usage=2 1\n\ncpu usage=3 -5\n",
	"m s=\"multi\nline\",v=1 1\nm v=2 2\n",
	"m s=\"esc\\\"aped\" 1\nm v=3\n",
	"m,t=a\\ b v=1\nm v=1.5e3,w=-.5,x=0x1p-2,y=1_0 9\n",
	"m v=1  2\nm v=1 2 \nm v=1\r\nm  v=1\n",
	"# comment\n  \nm v=1\n#\"quoted comment\nm v=2\n",
	"m v=1e400\n", "m v=-Inf\n", "m v=NaN\n", "m v=1.5i\n", "m v=-1u\n", "m v=tru\n",
	"m v=1 99999999999999999999\n", "m v=1 9999999999999\n", "m v=1 1-2\n",
	"m,t=a=b v=1\n", "m,t= v=1\n", "m, v=1\n", "m v=1,\n", "m v=\n", "m\n", ",m v=1\n",
	"é,t=ü v=1\n", "m,t=a v=\"\xff\"\n", "m v=\"unterminated\n",
	"m,b=2,a=1,__name__=x v=1\n", "m,a-b=1,a_b=2 v=1\n", "m value=1,value=2\n",
	"m v=1\n\r\nm v=2\r\nm v=3\n",
	"cpu,host=a usage=1 1700000000000000000\ncpu,host=a usage=1x 1700000000000000000\n",
}

// TestFastPathEquivalence runs the corpus and hand-written corner cases
// through both paths.
func TestFastPathEquivalence(t *testing.T) {
	for _, s := range handWritten {
		checkEquivalent(t, []byte(s))
	}
	inputs := corpusInputs(t)
	for _, in := range inputs {
		checkEquivalent(t, in)
	}
	// Whole bodies mixing lines of both kinds, good and bad: line numbers
	// of errors must match too.
	var body []byte
	for i, in := range inputs {
		body = append(body, in...)
		body = append(body, '\n')
		if i%50 == 49 {
			checkEquivalent(t, body)
			body = body[:0]
		}
	}
	checkEquivalent(t, BenchBody(3))
}

// FuzzFastPath checks that the fast path and the reference decoder map
// every input the same way.
func FuzzFastPath(f *testing.F) {
	for _, s := range handWritten {
		f.Add([]byte(s))
	}
	f.Add(BenchBody(1)[:2000])
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEquivalent(t, data)
	})
}

// TestParseDecimal compares the decimal shortcut with strconv.ParseFloat
// on random and edge-case decimals.
func TestParseDecimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	inputs := []string{"0", "-0", ".5", "5.", "007", "-.25", "123456789012345", "0.00000000000001", "999999999999999", "1.79769313486231"}
	for i := 0; i < 200000; i++ {
		digits := 1 + r.IntN(15)
		var sb strings.Builder
		if r.IntN(2) == 0 {
			sb.WriteByte('-')
		}
		dot := r.IntN(digits + 1)
		for d := 0; d < digits; d++ {
			if d == dot {
				sb.WriteByte('.')
			}
			sb.WriteByte(byte('0' + r.IntN(10)))
		}
		inputs = append(inputs, sb.String())
	}
	for _, in := range inputs {
		got, ok := parseDecimal([]byte(in))
		want, err := strconv.ParseFloat(in, 64)
		if !ok || err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q: parseDecimal %v %v, ParseFloat %v %v", in, got, ok, want, err)
		}
	}
	for _, in := range []string{"", "-", ".", "1.2.3", "1e5", "0x1p3", "1_0", "1234567890123456", "+1", "1-"} {
		if _, ok := parseDecimal([]byte(in)); ok {
			t.Errorf("%q: parseDecimal accepted it", in)
		}
	}
}
