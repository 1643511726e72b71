package influx

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/weir-metrics/weir/pkg/prw"
)

// The reference decoder reads about 1.8-2 M lines/s per core here
// (5000-line bodies, 9 tags, one field: BenchmarkDecoderOnly), which alone
// is the whole budget of the edge's line-protocol target. Nearly every line
// real senders write has one simple shape: ASCII names without escapes,
// numeric or plain string fields, an integer timestamp, "\n" at the end.
// fastLine reads exactly those lines, and maps them, in less time than
// the decoder takes to only split them (BenchmarkParse: 2.9-4.4 M lines/s
// with the mapping), and gives up on anything else: the line then goes to
// the reference decoder, which also produces every error message.
// FuzzFastPath and the corpus check that both paths map every input the
// same way.

// plain are the bytes fastLine accepts in measurements, keys and tag
// values: printable ASCII except the ones with a meaning (',', '=', ' ',
// '"') or starting an escape ('\\'). Anything else sends the line to the
// reference decoder.
var plain = func() (t [256]bool) {
	for c := 0x21; c <= 0x7e; c++ {
		t[c] = true
	}
	for _, c := range []byte(`,= "\`) {
		t[c] = false
	}
	return t
}()

// fieldEnd ends a numeric or boolean field value.
var fieldEnd = func() (t [256]bool) {
	for _, c := range []byte(",\n\r ") {
		t[c] = true
	}
	return t
}()

// parse maps data, line by line with fastLine where it can.
func (b *Batch) parse(data []byte, o *Options) error {
	line := int64(1) // the line number at i
	for i := 0; i < len(data); {
		if data[i] == '\n' {
			i++
			line++
			continue
		}
		if next, nl, ok := b.fastLine(data, i, o); ok {
			if b.invalid != nil {
				return b.invalid
			}
			b.Lines++
			i, line = next, line+nl
			continue
		}
		// fastLine may have left the previous-line caches describing a
		// line that was not emitted: the layout must be planned afresh.
		b.layout.ok = false
		// The reference decoder takes the line. Without a quote, the line
		// ends at the next newline; with one, a string value may hold
		// newlines, so it takes the rest of the body.
		end := bytes.IndexByte(data[i:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += i + 1 // the decoder sees the newline, as it would in the whole body
		}
		if bytes.IndexByte(data[i:end], '"') >= 0 {
			return b.parseSlow(data[i:], line-1, o)
		}
		if err := b.parseSlow(data[i:end], line-1, o); err != nil {
			return err
		}
		i = end
		line++
	}
	return nil
}

// fastLine maps the line starting at data[i] if it has the simple shape,
// and returns the index after it and the newlines it consumed. It returns
// ok false, having changed nothing, for any other line.
func (b *Batch) fastLine(data []byte, i int, o *Options) (next int, newlines int64, ok bool) {
	n := len(data)
	start := i
	for i < n && plain[data[i]] {
		i++
	}
	if i == start || i == n || data[start] == '#' {
		return
	}
	measurement := data[start:i]

	tags := b.tags[:0]
	keysBefore := len(b.prevKeys)
	b.keysReused = 0
	if data[i] == ',' {
		for {
			i++
			ks := i
			for i < n && plain[data[i]] {
				i++
			}
			if i == ks || i == n || data[i] != '=' {
				return
			}
			key := data[ks:i]
			i++
			vs := i
			for i < n && plain[data[i]] {
				i++
			}
			if i == vs || i == n {
				return
			}
			tags = append(tags, b.tag(len(tags), key, data[vs:i], data, o))
			if data[i] == ',' {
				continue
			}
			if data[i] != ' ' {
				return
			}
			break
		}
	} else if data[i] != ' ' {
		return
	}
	i++

	nums, strs, dropped := b.nums[:0], b.strs[:0], 0
	hasTime := false
fields:
	for {
		ks := i
		for i < n && plain[data[i]] {
			i++
		}
		if i == ks || i+1 >= n || data[i] != '=' {
			return
		}
		key := data[ks:i]
		i++
		switch c := data[i]; {
		case c == '"':
			vs := i + 1
			j := vs
			for j < n && data[j] != '"' {
				if data[j] == '\\' {
					return
				}
				j++
			}
			if j == n {
				return
			}
			v := data[vs:j]
			if !utf8.Valid(v) {
				return
			}
			newlines += int64(bytes.Count(v, []byte{'\n'}))
			i = j + 1
			if o.StringFields == StringsAsInfo {
				strs = append(strs, prw.Label{Name: b.labelName(key, data, o), Value: unsafeString(v)})
			} else {
				dropped++
			}
		case c == 't' || c == 'T' || c == 'f' || c == 'F':
			vs := i
			for i < n && !fieldEnd[data[i]] {
				i++
			}
			var v float64
			switch unsafeString(data[vs:i]) {
			case "t", "T", "true", "True", "TRUE":
				v = 1
			case "f", "F", "false", "False", "FALSE":
			default:
				return
			}
			nums = append(nums, numField{unsafeString(key), v})
		case c == '-' || c == '.' || c >= '0' && c <= '9':
			vs := i
			for i < n && !fieldEnd[data[i]] {
				i++
			}
			tok := data[vs:i]
			var v float64
			switch tok[len(tok)-1] {
			case 'i':
				x, err := strconv.ParseInt(unsafeString(tok[:len(tok)-1]), 10, 64)
				if err != nil {
					return
				}
				v = float64(x)
			case 'u':
				x, err := strconv.ParseUint(unsafeString(tok[:len(tok)-1]), 10, 64)
				if err != nil {
					return
				}
				v = float64(x)
			default:
				x, exact := parseDecimal(tok)
				if !exact {
					var err error
					x, err = strconv.ParseFloat(unsafeString(tok), 64)
					if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
						return
					}
				}
				v = x
			}
			nums = append(nums, numField{unsafeString(key), v})
		default:
			return
		}
		if i == n {
			break
		}
		switch data[i] {
		case ',':
			i++
		case '\n':
			i++
			newlines++
			break fields
		case ' ':
			i++
			hasTime = true
			break fields
		default:
			return
		}
	}

	var tb []byte
	if hasTime {
		ts := i
		for i < n && (data[i] >= '0' && data[i] <= '9' || data[i] == '-') {
			i++
		}
		if i == ts {
			return
		}
		tb = data[ts:i]
		if i < n {
			if data[i] != '\n' {
				return
			}
			i++
			newlines++
		}
	}
	ts, err := timestamp(tb, o)
	if err != nil {
		return
	}
	b.tags, b.nums, b.strs = tags, nums, strs
	b.StringFieldsDropped += dropped
	sameLayout := len(tags) == keysBefore && len(b.prevKeys) == keysBefore && b.keysReused == len(tags)
	b.emit(unsafeString(measurement), ts, o, sameLayout)
	return i, newlines, true
}

// tag maps the tag at position p of a line, reusing the previous line's
// label name when the key repeats.
func (b *Batch) tag(p int, key, value, data []byte, o *Options) prw.Label {
	var l prw.Label
	if p < len(b.prevKeys) && b.prevKeys[p].raw == unsafeString(key) {
		l.Name = b.prevKeys[p].name
		b.keysReused++
	} else {
		l.Name = b.labelName(key, data, o)
		if p < len(b.prevKeys) {
			b.prevKeys[p] = prevKey{unsafeString(key), l.Name}
		} else {
			b.prevKeys = append(b.prevKeys, prevKey{unsafeString(key), l.Name})
		}
	}
	l.Value = unsafeString(value)
	return l
}

// pow10 are the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal reads the plain decimals most values are ("-12.345"): an
// optional '-', digits, an optional '.' and digits, at most 15 digits in
// all. Their mantissa and the power of ten are exact float64s, so one
// division is correctly rounded: the result is strconv.ParseFloat's, which
// takes this same shortcut, without its general parsing. Anything else is
// left to strconv.ParseFloat.
func parseDecimal(b []byte) (float64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	var mant uint64
	digits, frac := 0, -1
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
		case c == '.' && frac < 0:
			frac = i
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	v := float64(mant)
	if frac >= 0 {
		v /= pow10[len(b)-frac-1]
	}
	if neg {
		v = -v
	}
	return v, true
}
