package rollup

import (
	"fmt"
	"math"
	"sort"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"github.com/DataDog/sketches-go/ddsketch/store"
	"google.golang.org/protobuf/proto"
)

// Gauge quantile sketches are DDSketches (github.com/DataDog/sketches-go)
// with the logarithmic index mapping and no bin collapsing. With relative
// accuracy α, the mapping's base is γ = (1+α)/(1-α); a positive value v
// falls in bin i = ⌊log_γ v⌋, and bin i stands for 2γ^(i+1)/(γ+1), which
// is within α·v of every v in the bin. The quantile q of n values is the
// value of the first bin (in value order: negative bins, the zero bin,
// positive bins) whose cumulated count exceeds q·(n-1): it is within
// α·|x| of x, the value at rank ⌊q·(n-1)⌋ of the sorted samples. Merging
// sketches adds bin counts and loses nothing, so the bound holds for any
// merge of windows.

// newMapping returns the index mapping of sketches with relative accuracy
// alpha.
func newMapping(alpha float64) (*mapping.LogarithmicMapping, error) {
	return mapping.NewLogarithmicMapping(alpha)
}

// NewSketch returns an empty sketch with relative accuracy alpha, as the
// rollup stage builds them.
func NewSketch(alpha float64) (*ddsketch.DDSketch, error) {
	m, err := newMapping(alpha)
	if err != nil {
		return nil, err
	}
	return ddsketch.NewDDSketchFromStoreProvider(m, store.DefaultProvider), nil
}

// EncodeSketch returns the sketch's DDSketch protobuf encoding. Bins are
// written contiguously (contiguousBinCounts) when that is compact, which
// is the common case and needs no map; otherwise as the binCounts map,
// marshalled deterministically. Either way the bytes depend on the bins
// only, so recomputed rows are byte-identical.
func EncodeSketch(s *ddsketch.DDSketch) ([]byte, error) {
	pb := &sketchpb.DDSketch{
		Mapping:        s.IndexMapping.ToProto(),
		PositiveValues: encodeStore(s.GetPositiveValueStore()),
		NegativeValues: encodeStore(s.GetNegativeValueStore()),
		ZeroCount:      s.GetZeroCount(),
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pb)
}

func encodeStore(st store.Store) *sketchpb.Store {
	bs := bins(st)
	if len(bs) == 0 {
		return &sketchpb.Store{}
	}
	lo, hi := bs[0].Index, bs[len(bs)-1].Index
	if span := int(hi-lo) + 1; span <= 2*len(bs)+8 {
		counts := make([]float64, span)
		for _, b := range bs {
			counts[b.Index-lo] = b.Count
		}
		return &sketchpb.Store{ContiguousBinCounts: counts, ContiguousBinIndexOffset: lo}
	}
	m := make(map[int32]float64, len(bs))
	for _, b := range bs {
		m[b.Index] = b.Count
	}
	return &sketchpb.Store{BinCounts: m}
}

// DecodeSketch decodes a sketch written by EncodeSketch.
func DecodeSketch(b []byte) (*ddsketch.DDSketch, error) {
	var pb sketchpb.DDSketch
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("decoding DDSketch: %w", err)
	}
	return ddsketch.FromProtoWithStoreProvider(&pb, store.DefaultProvider)
}

// Bin is one non-empty bin of a sketch.
type Bin struct {
	Index int32
	Count float64
}

// Bins is a sketch exploded into plain numbers, as the Parquet files carry
// it, so that SQL can merge and query sketches.
type Bins struct {
	Gamma     float64
	Positive  []Bin // by index
	Negative  []Bin // by index of -v
	ZeroCount float64
}

// SketchBins explodes a sketch built with the logarithmic mapping.
func SketchBins(s *ddsketch.DDSketch) (Bins, error) {
	m, ok := s.IndexMapping.(*mapping.LogarithmicMapping)
	if !ok {
		return Bins{}, fmt.Errorf("sketch uses %T, not the logarithmic mapping", s.IndexMapping)
	}
	if p := m.ToProto(); p.IndexOffset != 0 {
		return Bins{}, fmt.Errorf("sketch mapping has index offset %v, want 0", p.IndexOffset)
	}
	b := Bins{Gamma: m.ToProto().Gamma, ZeroCount: s.GetZeroCount()}
	b.Positive = bins(s.GetPositiveValueStore())
	b.Negative = bins(s.GetNegativeValueStore())
	return b, nil
}

func bins(st store.Store) []Bin {
	var out []Bin
	st.ForEach(func(i int, c float64) bool {
		out = append(out, Bin{Index: int32(i), Count: c})
		return false
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// BinValue is the value bin i of a sketch with base gamma stands for.
func BinValue(gamma float64, i int32) float64 {
	return 2 * math.Pow(gamma, float64(i)+1) / (gamma + 1)
}

// Quantile computes the q-quantile of merged bins the way the SQL in
// docs/rollups.md does (and DDSketch itself): the value of the first bin,
// in value order, whose cumulated count exceeds q·(n-1).
func Quantile(q float64, merged Bins) float64 {
	type vb struct{ v, n float64 }
	var all []vb
	for _, b := range merged.Negative {
		all = append(all, vb{-BinValue(merged.Gamma, b.Index), b.Count})
	}
	if merged.ZeroCount > 0 {
		all = append(all, vb{0, merged.ZeroCount})
	}
	for _, b := range merged.Positive {
		all = append(all, vb{BinValue(merged.Gamma, b.Index), b.Count})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	var total float64
	for _, b := range all {
		total += b.n
	}
	if total == 0 {
		return math.NaN()
	}
	rank := q * (total - 1)
	var cum float64
	for _, b := range all {
		cum += b.n
		if cum > rank {
			return b.v
		}
	}
	return all[len(all)-1].v
}

// MergeBins adds the bins of several sketches with the same gamma.
func MergeBins(parts ...Bins) Bins {
	out := Bins{}
	pos, neg := map[int32]float64{}, map[int32]float64{}
	for _, p := range parts {
		if out.Gamma == 0 {
			out.Gamma = p.Gamma
		}
		out.ZeroCount += p.ZeroCount
		for _, b := range p.Positive {
			pos[b.Index] += b.Count
		}
		for _, b := range p.Negative {
			neg[b.Index] += b.Count
		}
	}
	for i, c := range pos {
		out.Positive = append(out.Positive, Bin{i, c})
	}
	for i, c := range neg {
		out.Negative = append(out.Negative, Bin{i, c})
	}
	sort.Slice(out.Positive, func(i, j int) bool { return out.Positive[i].Index < out.Positive[j].Index })
	sort.Slice(out.Negative, func(i, j int) bool { return out.Negative[i].Index < out.Negative[j].Index })
	return out
}
