package shipper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// Thanos is the "thanos" section of a block's meta.json, as Thanos and
// Mimir read it.
type Thanos struct {
	Version      int               `json:"version,omitempty"`
	Labels       map[string]string `json:"labels"`
	Downsample   Downsample        `json:"downsample"`
	Source       string            `json:"source"`
	SegmentFiles []string          `json:"segment_files,omitempty"`
	Files        []File            `json:"files,omitempty"`
}

// Downsample is the resolution of a block's samples; 0 is raw data.
type Downsample struct {
	Resolution int64 `json:"resolution"`
}

// File is one file of a block.
type File struct {
	RelPath   string `json:"rel_path"`
	SizeBytes int64  `json:"size_bytes,omitempty"`
}

// WithThanos adds the thanos section to a prometheus/tsdb meta.json,
// keeping every field the TSDB wrote.
func WithThanos(meta []byte, th Thanos) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(meta, &m); err != nil {
		return nil, fmt.Errorf("decoding meta.json: %w", err)
	}
	raw, err := json.Marshal(th)
	if err != nil {
		return nil, err
	}
	m["thanos"] = raw
	return json.MarshalIndent(m, "", "\t")
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// nopLogger silences objstore's go-kit logging of each file.
type nopLogger struct{}

func (nopLogger) Log(...any) error { return nil }
