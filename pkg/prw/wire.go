package prw

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Low-level protobuf wire reading.
//
// The readers below follow what the gogo-generated Unmarshal methods of
// prompb and writev2 accept, because those are what Prometheus' own receiver
// uses and the tests compare against them:
//
//   - a varint may take up to 10 bytes; bits beyond 64 are dropped, an 11th
//     byte is an error;
//   - the field number is the tag shifted right by 3 and truncated to int32;
//     a result <= 0 is an error;
//   - unknown fields of every wire type are skipped, groups included (nesting
//     is tracked by depth only, as gogo does);
//   - a known field with a wire type it cannot have is an error.
//
// One deliberate difference: gogo lets the last element of a packed repeated
// field run past the field's declared length and carries on from wherever it
// stopped; here the elements must end exactly at the declared length
// (errPackedLength).
//
// The helpers return positions rather than errors so that the fast paths stay
// small enough to inline; a negative position is one of the pos* codes and is
// turned into an error by posErr only on the failure path.

const (
	posTruncated      = -1 // input ends inside a varint
	posOverflow       = -2 // varint longer than 10 bytes
	posBytesTruncated = -3 // length prefix points past the end of the message
	posFixedTruncated = -4 // input ends inside a fixed64/fixed32
)

var (
	errTruncatedVarint = errors.New("truncated varint")
	errVarintOverflow  = errors.New("varint longer than 10 bytes")
	errTruncatedBytes  = errors.New("length-delimited field exceeds its message")
	errTruncatedFixed  = errors.New("truncated fixed-width field")
	errEndGroup        = errors.New("end-group tag without a group")
	errUnclosedGroup   = errors.New("group not closed before end of message")
	// errPackedLength is returned when the elements of a packed repeated
	// field do not end exactly at the field's length. gogo accepts some of
	// these inputs (see above); the fuzz tests rely on this error to tell that
	// case apart.
	errPackedLength = errors.New("packed repeated field: elements do not fill its length exactly")
)

func posErr(pos int) error {
	switch pos {
	case posTruncated:
		return errTruncatedVarint
	case posOverflow:
		return errVarintOverflow
	case posBytesTruncated:
		return errTruncatedBytes
	case posFixedTruncated:
		return errTruncatedFixed
	}
	return fmt.Errorf("internal error: bad position %d", pos)
}

// Wire types.
const (
	wtVarint  = 0
	wtFixed64 = 1
	wtBytes   = 2
	wtStart   = 3
	wtEnd     = 4
	wtFixed32 = 5
)

// The decoders switch on normalised tags written as constant expressions,
// (field<<3 | wire type), so that the switches compile to jump tables.

// varint reads a varint at b[i:] and returns it with the position after it.
func varint(b []byte, i int) (uint64, int) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1
	}
	return varintSlow(b, i)
}

func varintSlow(b []byte, i int) (uint64, int) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(b) {
			return 0, posTruncated
		}
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i
		}
	}
	return 0, posOverflow
}

// tag reads a field tag at b[i:] and returns its normalised key (field<<3 | wire type),
// the position after it, and an error for an unreadable or illegal tag.
func tag(b []byte, i int) (uint64, int, error) {
	t, j := varint(b, i)
	if j < 0 {
		return 0, 0, posErr(j)
	}
	if t&7 == wtEnd {
		return 0, 0, errEndGroup
	}
	// gogo reads the field number as int32(tag >> 3).
	fn := int32(t >> 3)
	if fn <= 0 {
		return 0, 0, fmt.Errorf("illegal field number %d", fn)
	}
	return uint64(fn)<<3 | t&7, j, nil
}

// lenDelim reads a length prefix at b[i:] and returns the payload bounds.
// end < 0 is a pos* code.
func lenDelim(b []byte, i int) (start, end int) {
	n, i := varint(b, i)
	if i < 0 {
		return 0, i
	}
	if n > uint64(len(b)-i) {
		return 0, posBytesTruncated
	}
	return i, i + int(n)
}

// fixed64 reads a little-endian 64-bit value at b[i:].
func fixed64(b []byte, i int) (uint64, int) {
	if len(b)-i < 8 {
		return 0, posFixedTruncated
	}
	return binary.LittleEndian.Uint64(b[i:]), i + 8
}

// str returns b[s:e] as a string sharing b's memory. Callers must not let
// the string outlive b (see Request).
func str(b []byte, s, e int) string {
	if s == e {
		return ""
	}
	return unsafe.String(&b[s], e-s)
}

// skip skips the value of a field with wire type wt whose tag ended at b[i:]
// and returns the position after it. Groups are skipped up to their matching
// end-group tag by depth, without comparing field numbers, like gogo.
func skip(b []byte, i int, wt uint64) (int, error) {
	depth := 0
	for {
		switch wt {
		case wtVarint:
			if _, i = varint(b, i); i < 0 {
				return 0, posErr(i)
			}
		case wtFixed64:
			if len(b)-i < 8 {
				return 0, errTruncatedFixed
			}
			i += 8
		case wtBytes:
			if _, i = lenDelim(b, i); i < 0 {
				return 0, posErr(i)
			}
		case wtStart:
			depth++
		case wtEnd:
			if depth == 0 {
				return 0, errEndGroup
			}
			depth--
		case wtFixed32:
			if len(b)-i < 4 {
				return 0, errTruncatedFixed
			}
			i += 4
		default:
			return 0, fmt.Errorf("illegal wire type %d", wt)
		}
		if depth == 0 {
			return i, nil
		}
		if i >= len(b) {
			return 0, errUnclosedGroup
		}
		var t uint64
		if t, i = varint(b, i); i < 0 {
			return 0, posErr(i)
		}
		wt = t & 7
	}
}

// skipUnknown handles the default case of a decoder's field switch: k is a
// normalised key that matched none of the expected (field, wire type) pairs.
// If its field number is one of known, the wire type is wrong and that is an
// error naming the field; otherwise the field is skipped.
func skipUnknown(b []byte, i int, k uint64, known fieldNames) (int, error) {
	if name := known.name(k >> 3); name != "" {
		return 0, fmt.Errorf("field %s (%d): wrong wire type %d", name, k>>3, k&7)
	}
	return skip(b, i, k&7)
}

// fieldNames maps a message's field numbers to names for error messages;
// index = field number.
type fieldNames []string

func (f fieldNames) name(n uint64) string {
	if n < uint64(len(f)) {
		return f[n]
	}
	return ""
}

// checkPackedVarints checks that the packed payload b[s:e] is a whole
// number of varints.
func checkPackedVarints(b []byte, s, e int) error {
	p := b[:e]
	for i := s; i < e; {
		if _, i = varint(p, i); i < 0 {
			if i == posTruncated {
				return errPackedLength
			}
			return posErr(i)
		}
	}
	return nil
}

// checkPackedFixed64 checks that the packed payload length n is a whole
// number of 8-byte values.
func checkPackedFixed64(n int) error {
	if n%8 != 0 {
		return errPackedLength
	}
	return nil
}
