package influx

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weir-metrics/weir/pkg/prw"
)

// render prints a batch as `name{l="v", ...} value @ms` lines, labels
// sorted, for comparisons.
func render(t *testing.T, b *Batch) []string {
	t.Helper()
	var out []string
	for i := range b.Series {
		ts := b.Series[i]
		ls := slices.Clone(ts.Labels)
		ts.Labels = ls
		if err := ts.Normalize(); err != nil {
			t.Fatalf("series %d does not normalize: %v", i, err)
		}
		var name string
		var parts []string
		for _, l := range ts.Labels {
			if l.Name == "__name__" {
				name = l.Value
				continue
			}
			parts = append(parts, fmt.Sprintf("%s=%q", l.Name, l.Value))
		}
		for _, s := range ts.Samples {
			out = append(out, fmt.Sprintf("%s{%s} %v @%d", name, strings.Join(parts, ", "), s.Value, s.Timestamp))
		}
	}
	return out
}

func parse(t *testing.T, body string, o Options) []string {
	t.Helper()
	var b Batch
	if err := b.Parse([]byte(body), &o); err != nil {
		t.Fatalf("Parse(%q): %v", body, err)
	}
	return render(t, &b)
}

// TestMapping holds the examples of docs/line-protocol.md.
func TestMapping(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123).Add(456 * time.Microsecond)
	cases := []struct {
		name string
		body string
		opts Options
		want []string
	}{
		{
			name: "fields become <measurement>_<field>",
			body: "cpu,host=a,cpu=cpu0 usage_user=1.5,usage_idle=98i 1700000000000000000",
			want: []string{
				`cpu_usage_user{cpu="cpu0", host="a"} 1.5 @1700000000000`,
				`cpu_usage_idle{cpu="cpu0", host="a"} 98 @1700000000000`,
			},
		},
		{
			name: "field value keeps the measurement name",
			body: "temperature,room=kitchen value=21.5 1700000000000000000",
			want: []string{`temperature{room="kitchen"} 21.5 @1700000000000`},
		},
		{
			name: "uint and bool",
			body: "disk,path=/ free=123u,ro=true,rw=F 1700000000000000000",
			want: []string{
				`disk_free{path="/"} 123 @1700000000000`,
				`disk_ro{path="/"} 1 @1700000000000`,
				`disk_rw{path="/"} 0 @1700000000000`,
			},
		},
		{
			name: "string fields are dropped by default",
			body: `syslog,host=a severity=3i,message="disk full" 1700000000000000000`,
			want: []string{`syslog_severity{host="a"} 3 @1700000000000`},
		},
		{
			name: "string fields kept as an info series",
			body: `syslog,host=a severity=3i,message="disk full",facility="kern" 1700000000000000000`,
			opts: Options{StringFields: StringsAsInfo},
			want: []string{
				`syslog_severity{host="a"} 3 @1700000000000`,
				`syslog_info{facility="kern", host="a", message="disk full"} 1 @1700000000000`,
			},
		},
		{
			name: "names are sanitized",
			body: `disk.io,mount\ point=/var,1d=x read-bytes=1i,µs=2 1700000000000000000`,
			want: []string{
				`disk_io_read_bytes{_1d="x", mount_point="/var"} 1 @1700000000000`,
				`disk_io__s{_1d="x", mount_point="/var"} 2 @1700000000000`,
			},
		},
		{
			name: "names kept as sent",
			body: `disk.io,mount\ point=/var read-bytes=1i 1700000000000000000`,
			opts: Options{KeepNames: true},
			want: []string{`disk.io_read-bytes{mount point="/var"} 1 @1700000000000`},
		},
		{
			name: "database label",
			body: "mem used=1 1700000000000000000",
			opts: Options{DatabaseLabel: "bucket", Database: "telegraf"},
			want: []string{`mem_used{bucket="telegraf"} 1 @1700000000000`},
		},
		{
			name: "unsorted tags",
			body: "net,zone=b,host=a,iface=eth0 rx=1 1700000000000000000",
			want: []string{`net_rx{host="a", iface="eth0", zone="b"} 1 @1700000000000`},
		},
		{
			name: "escapes",
			body: `my\ measure,tag\,key=va\=l\ue field\=k="s",f=1 1700000000000000000`,
			opts: Options{KeepNames: true, StringFields: StringsAsInfo},
			want: []string{
				`my measure_f{tag,key="va=l\\ue"} 1 @1700000000000`,
				`my measure_info{field=k="s", tag,key="va=l\\ue"} 1 @1700000000000`,
			},
		},
		{
			name: "no timestamp takes the receive time",
			body: "up value=1",
			opts: Options{Now: now},
			want: []string{`up{} 1 @1700000000123`},
		},
		{
			name: "no timestamp at second precision",
			body: "up value=1",
			opts: Options{Now: now, Precision: Second},
			want: []string{`up{} 1 @1700000000000`},
		},
		{
			name: "precision seconds",
			body: "up value=1 1700000000",
			opts: Options{Precision: Second},
			want: []string{`up{} 1 @1700000000000`},
		},
		{
			name: "precision microseconds",
			body: "up value=1 1700000000123456",
			opts: Options{Precision: Microsecond},
			want: []string{`up{} 1 @1700000000123`},
		},
		{
			name: "precision hours",
			body: "up value=1 472222",
			opts: Options{Precision: Hour},
			want: []string{`up{} 1 @1699999200000`},
		},
		{
			name: "negative nanoseconds round down",
			body: "up value=1 -1",
			want: []string{`up{} 1 @-1`},
		},
		{
			name: "comments, blank lines and CRLF",
			body: "# a comment\r\n\r\nup value=1 1000000\r\n  \nup value=2 2000000\n",
			want: []string{`up{} 1 @1`, `up{} 2 @2`},
		},
		{
			name: "a line of only string fields, dropped",
			body: `log msg="x" 1`,
			want: nil,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := parse(t, c.body, c.opts)
			if !slices.Equal(got, c.want) {
				t.Fatalf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

func TestStringFieldsCounted(t *testing.T) {
	var b Batch
	if err := b.Parse([]byte("a x=\"1\",y=\"2\",z=1\nb w=\"3\"\n"), &Options{}); err != nil {
		t.Fatal(err)
	}
	if b.StringFieldsDropped != 3 || len(b.Series) != 1 || b.Lines != 2 {
		t.Fatalf("dropped %d series %d lines %d, want 3, 1, 2", b.StringFieldsDropped, len(b.Series), b.Lines)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		body       string
		line       int64
		col        int
		msg        string
		precisionS bool
	}{
		{"cpu value=1\ncpu,host=a value=\n", 2, 18, "field value", false},
		{"cpu value=1\n\ncpu value=1 12x\n", 3, 13, "invalid timestamp", false},
		{"cpu,host value=1", 1, 5, "expected '='", false},
		{"cpu value=1 99999999999999999999", 1, 13, "out of range", false},
		{"ok value=1\ncpu value=1 9999999999999", 2, 13, "out of range", true},
		{"cpu value=NaN", 1, 11, "field value", false},
		{"cpu", 1, 4, "", false},
	}
	for _, c := range cases {
		var b Batch
		o := Options{}
		if c.precisionS {
			o.Precision = Second
		}
		err := b.Parse([]byte(c.body), &o)
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%q: want a *ParseError, got %v", c.body, err)
			continue
		}
		if pe.Line != c.line || pe.Column != c.col || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: got line %d column %d %q, want line %d column %d mentioning %q", c.body, pe.Line, pe.Column, err, c.line, c.col, c.msg)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("line %d, column %d", c.line, c.col)) {
			t.Errorf("%q: message %q does not name the line and column", c.body, err)
		}
	}
}

func TestParsePrecision(t *testing.T) {
	for _, c := range []struct {
		in   string
		v1   bool
		want Precision
		ok   bool
	}{
		{"", false, Nanosecond, true}, {"ns", false, Nanosecond, true}, {"n", true, Nanosecond, true},
		{"us", false, Microsecond, true}, {"u", true, Microsecond, true}, {"ms", false, Millisecond, true},
		{"s", false, Second, true}, {"m", true, Minute, true}, {"h", true, Hour, true},
		{"m", false, 0, false}, {"h", false, 0, false}, {"d", true, 0, false},
	} {
		p, err := ParsePrecision(c.in, c.v1)
		if (err == nil) != c.ok || c.ok && p != c.want {
			t.Errorf("ParsePrecision(%q, %v) = %v, %v", c.in, c.v1, p, err)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"cpu_usage": "cpu_usage", "disk.io": "disk_io", "1m": "_1m", "a:b": "a:b", "é": "_", "a-b c": "a_b_c",
	} {
		if got := SanitizeMetricName(in); got != want {
			t.Errorf("SanitizeMetricName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := SanitizeLabelName("a:b"); got != "a_b" {
		t.Errorf("SanitizeLabelName(a:b) = %q", got)
	}
}

// TestBatchReuse parses two bodies with one Batch: the second parse must not
// disturb what it returns, and a long body with escapes exercises arena
// growth.
func TestBatchReuse(t *testing.T) {
	var b Batch
	var sb strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&sb, "m\\ %d,t\\ %d=v\\ %d f=%d %d\n", i%7, i%5, i, i, int64(i)*1e6)
	}
	body := []byte(sb.String())
	for round := 0; round < 2; round++ {
		if err := b.Parse(body, &Options{KeepNames: true}); err != nil {
			t.Fatal(err)
		}
		if len(b.Series) != 3000 {
			t.Fatalf("%d series", len(b.Series))
		}
		for i, ts := range b.Series {
			wantName := fmt.Sprintf("m %d_f", i%7)
			var name, tag string
			for _, l := range ts.Labels {
				if l.Name == "__name__" {
					name = l.Value
				} else {
					tag = l.Name + "=" + l.Value
				}
			}
			if name != wantName || tag != fmt.Sprintf("t %d=v %d", i%5, i) || ts.Samples[0].Value != float64(i) || ts.Samples[0].Timestamp != int64(i) {
				t.Fatalf("round %d series %d: %v", round, i, ts)
			}
		}
	}
	_ = prw.TimeSeries{}
	_ = math.Pi
}
