package prw

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/histogram"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func ls(kv ...string) []Label {
	var out []Label
	for i := 0; i < len(kv); i += 2 {
		out = append(out, Label{kv[i], kv[i+1]})
	}
	return out
}

func rawHistogram(h *histogram.Histogram) Histogram {
	hp := writev2.FromIntHistogram(0, 1, h)
	return Histogram{Timestamp: 1, Raw: mustMarshal(&hp)}
}

func rawFloatHistogram(h *histogram.FloatHistogram) Histogram {
	hp := writev2.FromFloatHistogram(0, 1, h)
	return Histogram{Timestamp: 1, Raw: mustMarshal(&hp)}
}

func TestNormalizeErrors(t *testing.T) {
	badCount := testIntHistogram()
	badCount.Count = 3
	badSpans := testFloatHistogram()
	badSpans.PositiveSpans[0].Length = 5
	badCustom := testCustomHistogram()
	badCustom.CustomValues = []float64{1, 0.5, 2, 3}

	tests := []struct {
		name   string
		ts     TimeSeries
		want   string // the whole Error()
		target error  // errors.Is on the histogram cause
	}{
		{"no labels", TimeSeries{}, "invalid series {}: no labels", nil},
		{"missing name", TimeSeries{Labels: ls("job", "a")}, `invalid series {job="a"}: missing metric name (__name__ label)`, nil},
		{"empty name", TimeSeries{Labels: ls("job", "a", "__name__", "")}, `invalid series {__name__="", job="a"}: empty metric name`, nil},
		{"empty label name", TimeSeries{Labels: ls("__name__", "up", "", "x")}, `invalid series up{""="x"}: empty label name`, nil},
		{"duplicate", TimeSeries{Labels: ls("__name__", "up", "job", "a", "instance", "i", "job", "b")},
			`invalid series up{instance="i", job="a", job="b"}: duplicate label name "job"`, nil},
		{"duplicate with empty value", TimeSeries{Labels: ls("__name__", "up", "job", "", "job", "b")},
			`invalid series up{job="", job="b"}: duplicate label name "job"`, nil},
		{"duplicate name", TimeSeries{Labels: ls("__name__", "up", "__name__", "down")},
			`invalid series up{__name__="down"}: duplicate label name "__name__"`, nil},
		{"invalid utf8 name", TimeSeries{Labels: ls("__name__", "up", "jo\xffb", "a")},
			`invalid series up{"jo\xffb"="a"}: label name "jo\xffb" is not valid UTF-8`, nil},
		{"invalid utf8 value", TimeSeries{Labels: ls("__name__", "up", "job", "\xc3")},
			`invalid series up{job="\xc3"}: value of label "job" is not valid UTF-8`, nil},
		{"invalid utf8 metric name", TimeSeries{Labels: ls("__name__", "u\xff")},
			`invalid series {"u\xff"}: value of label "__name__" is not valid UTF-8`, nil},
		{"histogram count", TimeSeries{Labels: ls("__name__", "h"), Histograms: []Histogram{rawHistogram(testIntHistogram()), rawHistogram(badCount)}},
			"invalid series h: histogram 1: 14 observations found in buckets, but the Count field is 3: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)",
			histogram.ErrHistogramCountMismatch},
		{"float histogram spans", TimeSeries{Labels: ls("__name__", "h"), Histograms: []Histogram{rawFloatHistogram(badSpans)}},
			"invalid series h: histogram 0: positive side: spans need 5 buckets, have 3 buckets: histogram spans specify different number of buckets than provided",
			histogram.ErrHistogramSpansBucketsMismatch},
		{"custom bounds", TimeSeries{Labels: ls("__name__", "h"), Histograms: []Histogram{rawHistogram(badCustom)}},
			"invalid series h: histogram 0: custom buckets: previous bound is 1.000000 and current is 0.500000: histogram custom bounds must be in strictly increasing order",
			histogram.ErrHistogramCustomBucketsInvalid},
		{"undecodable histogram", TimeSeries{Labels: ls("__name__", "h"), Histograms: []Histogram{{Raw: []byte{0x08}}}},
			"invalid series h: histogram 0: unexpected EOF", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ts.Normalize()
			var ise *InvalidSeriesError
			if !errors.As(err, &ise) {
				t.Fatalf("error %v is not an *InvalidSeriesError", err)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n%s\nwant\n%s", err, tc.want)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Fatalf("error does not wrap %v", tc.target)
			}
		})
	}
}

func TestNormalizeHistogramCountTooBig(t *testing.T) {
	// With a non-NaN sum, Count must equal the bucket total exactly, so a
	// count above it is as invalid as one below.
	h := testIntHistogram()
	h.Count = 100
	ts := TimeSeries{Labels: ls("__name__", "h"), Histograms: []Histogram{rawHistogram(h)}}
	if err := ts.Normalize(); !errors.Is(err, histogram.ErrHistogramCountMismatch) {
		t.Fatalf("got %v", err)
	}
}

func TestNormalizeSortsAndDropsEmpty(t *testing.T) {
	ts := TimeSeries{
		Labels:     ls("job", "a", "__name__", "up", "zone", "", "instance", "i", "a", ""),
		Histograms: []Histogram{rawHistogram(testIntHistogram()), rawFloatHistogram(testFloatHistogram()), rawHistogram(testCustomHistogram())},
	}
	if err := ts.Normalize(); err != nil {
		t.Fatal(err)
	}
	if want := ls("__name__", "up", "instance", "i", "job", "a"); !reflect.DeepEqual(ts.Labels, want) {
		t.Fatalf("labels %v, want %v", ts.Labels, want)
	}

	sorted := TimeSeries{Labels: ls("__name__", "up", "instance", "i", "job", "a")}
	before := &sorted.Labels[0]
	allocs := testing.AllocsPerRun(100, func() {
		if err := sorted.Normalize(); err != nil {
			t.Fatal(err)
		}
	})
	if (allocs != 0 && !raceEnabled) || &sorted.Labels[0] != before {
		t.Fatalf("Normalize of a sorted series allocated %v times", allocs)
	}
}

func TestFormatSelector(t *testing.T) {
	for _, tc := range []struct {
		ls   []Label
		want string
	}{
		{nil, "{}"},
		{ls("__name__", "up"), "up"},
		{ls("__name__", "ns:rate5m", "job", "a"), `ns:rate5m{job="a"}`},
		{ls("__name__", "my.metric", "service.name", "x\n"), `{"my.metric", "service.name"="x\n"}`},
		{ls("a", "1", "b", "2"), `{a="1", b="2"}`},
	} {
		if got := Selector(tc.ls); got != tc.want {
			t.Errorf("Selector(%v) = %s, want %s", tc.ls, got, tc.want)
		}
	}
	long := Selector(ls("__name__", "up", "v", strings.Repeat("é", 2000)))
	if len(long) > maxSelectorLen+8 || !strings.HasSuffix(long, "...}") {
		t.Errorf("long selector not truncated: %d bytes", len(long))
	}
}

func TestHistogramDecode(t *testing.T) {
	ih, fh, err := rawHistogram(testIntHistogram()).Decode()
	if err != nil || fh != nil || ih == nil || !ih.Equals(testIntHistogram()) {
		t.Fatalf("int: %v %v %v", ih, fh, err)
	}
	ih, fh, err = rawFloatHistogram(testFloatHistogram()).Decode()
	if err != nil || ih != nil || fh == nil || !fh.Equals(testFloatHistogram()) {
		t.Fatalf("float: %v %v %v", ih, fh, err)
	}
	ih, _, err = rawHistogram(testCustomHistogram()).Decode()
	if err != nil || !ih.Equals(testCustomHistogram()) {
		t.Fatalf("custom: %v %v", ih, err)
	}
	if _, _, err := (Histogram{Raw: []byte{0x09, 1}}).Decode(); err == nil {
		t.Fatal("no error for a truncated histogram")
	}
}

func TestValidUTF8MatchesStdlib(t *testing.T) {
	cases := []string{"", "a", "abcdefgh", "abcdefghi", "ümlaut", "abcdefg\xff", "abcdefgh\xff", "\xffabcdefgh", "日本語のラベル値", "abc\xc3", strings.Repeat("x", 63) + "é"}
	for _, s := range cases {
		if validUTF8(s) != utf8.ValidString(s) {
			t.Errorf("validUTF8(%q) = %v, utf8.ValidString says %v", s, validUTF8(s), utf8.ValidString(s))
		}
	}
}

func FuzzValidUTF8(f *testing.F) {
	f.Add("node-exporter")
	f.Add("a\xffb")
	f.Fuzz(func(t *testing.T, s string) {
		if validUTF8(s) != utf8.ValidString(s) {
			t.Fatalf("validUTF8(%q) disagrees with utf8.ValidString", s)
		}
	})
}

func BenchmarkValidUTF8(b *testing.B) {
	strs := []string{"__name__", "node_metric_12_total", "cluster", "eu-west-1", "instance", "10.0.3.12:9100", "pod", "node-exporter-00042"}
	b.Run("stdlib", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, s := range strs {
				_ = utf8.ValidString(s)
			}
		}
	})
	b.Run("validUTF8", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, s := range strs {
				_ = validUTF8(s)
			}
		}
	})
}

// normalizeReference is Normalize's label checks written plainly: sort,
// then each check in order on every label. Normalize's fast path must
// agree with it on every input, error messages included.
func normalizeReference(ts *TimeSeries) error {
	ls := ts.Labels
	if len(ls) == 0 {
		return invalidSeries(ls, nil, "no labels")
	}
	if !slices.IsSortedFunc(ls, func(a, b Label) int { return strings.Compare(a.Name, b.Name) }) {
		slices.SortFunc(ls, compareLabels)
	}
	hasName := false
	for i, l := range ls {
		switch {
		case l.Name == "":
			return invalidSeries(ls, nil, "empty label name")
		case !utf8.ValidString(l.Name):
			return invalidSeries(ls, nil, "label name %q is not valid UTF-8", l.Name)
		case !utf8.ValidString(l.Value):
			return invalidSeries(ls, nil, "value of label %q is not valid UTF-8", l.Name)
		case i > 0 && ls[i-1].Name == l.Name:
			return invalidSeries(ls, nil, "duplicate label name %q", l.Name)
		case l.Name == metricNameLabel && l.Value == "":
			return invalidSeries(ls, nil, "empty metric name")
		case l.Name == metricNameLabel:
			hasName = true
		}
	}
	if !hasName {
		return invalidSeries(ls, nil, "missing metric name (__name__ label)")
	}
	ts.Labels = slices.DeleteFunc(ls, func(l Label) bool { return l.Value == "" })
	return nil
}

// FuzzNormalize checks Normalize against normalizeReference on label sets
// cut from the input: "\n" separates labels and "=" name from value, so
// the fuzzer reaches unsorted, duplicate, empty and non-UTF-8 labels.
func FuzzNormalize(f *testing.F) {
	f.Add("__name__=up\ninstance=a:9100\njob=node")
	f.Add("job=node\n__name__=up\nzone=")
	f.Add("__name__=up\njob=a\njob=b")
	f.Add("__name__=up\njob=caf\xc3\xa9\nx=\xff")
	f.Add("__name__=\njob=a")
	f.Add("=v\n__name__=m")
	f.Add("a=12345678\nb=1234567\nc=1234\n__name__=long_metric_name_total")
	f.Fuzz(func(t *testing.T, in string) {
		var labels []Label
		for _, kv := range strings.Split(in, "\n") {
			name, value, _ := strings.Cut(kv, "=")
			labels = append(labels, Label{Name: name, Value: value})
		}
		if in == "" {
			labels = nil
		}
		got := TimeSeries{Labels: slices.Clone(labels)}
		want := TimeSeries{Labels: slices.Clone(labels)}
		gotErr, wantErr := got.Normalize(), normalizeReference(&want)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("labels %q: Normalize: %v, reference: %v", labels, gotErr, wantErr)
		}
		if gotErr == nil && !slices.Equal(got.Labels, want.Labels) {
			t.Fatalf("labels %q: Normalize gave %q, reference %q", labels, got.Labels, want.Labels)
		}
	})
}

func TestOrBytes(t *testing.T) {
	for n := 0; n <= 40; n++ {
		for pos := 0; pos < n; pos++ {
			b := []byte(strings.Repeat("a", n))
			if got := orBytes(string(b)); got&0x80 != 0 {
				t.Fatalf("orBytes(%q) = %#x, ASCII reported as not", b, got)
			}
			b[pos] = 0xc3
			if got := orBytes(string(b)); got&0x80 == 0 {
				t.Fatalf("orBytes(%q) = %#x: byte %d not seen", b, got, pos)
			}
		}
	}
}
