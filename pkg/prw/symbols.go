package prw

import (
	"hash/maphash"
	"unsafe"
)

// symbolTable maps the strings of one request being encoded to their
// symbol refs. It replaces a map[string]uint32, which was the largest
// single cost of encoding: its slots hold no pointers (the strings live
// once, in strs), so filling them costs no GC write barriers; they are 8
// bytes, so more of them stay in the CPU caches; and a generation stamp
// empties the table for the next request without clearing it.
//
// In front of it sits a small cache keyed by the address and length of a
// string's bytes. Strings that alias one buffer — the symbol table of a
// remote-write 2.0 request, the interned labels of the stream's decision
// cache — repeat the same address for the same content, and are then
// found without hashing or comparing their bytes. Addresses are only
// compared, never followed: the Encoder's callers keep every appended
// string alive and unchanged until Reset, so an address cannot be reused
// for other content before the cache is emptied.
type symbolTable struct {
	strs  []string // by ref; strs[0] is ""
	slots []symbolSlot
	ptrs  []ptrSlot
	gen   uint32 // 1 to maxGen
	seed  maphash.Seed
}

// A slot's stamp packs a ref (the low 24 bits) and the generation it was
// written in (the high 8): slots of another generation are empty. A
// record of at most 64 MiB holds fewer than 1<<24 symbols.
const (
	refBits = 24
	refMask = 1<<refBits - 1
	maxGen  = 1<<(32-refBits) - 1
	maxRefs = 1 << refBits
)

// symbolSlot is a slot of the open-addressing table: the high bits of a
// string's hash, and its stamp.
type symbolSlot struct {
	hash, stamp uint32
}

// ptrSlot is a slot of the address cache.
type ptrSlot struct {
	addr     uintptr
	n, stamp uint32
}

// ptrBits sizes the address cache, of 1<<ptrBits slots. It is
// direct-mapped, so it only needs to hold the strings that recur within a
// few series.
const ptrBits = 9

func (t *symbolTable) stamp(ref uint32) uint32 { return t.gen<<refBits | ref }

// reset empties the table, keeping its storage.
func (t *symbolTable) reset() {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.slots = make([]symbolSlot, 1024)
		t.ptrs = make([]ptrSlot, 1<<ptrBits)
	}
	clear(t.strs) // drop references to the previous request's strings
	t.strs = append(t.strs[:0], "")
	t.gen++
	if t.gen > maxGen { // wrapped: stale stamps could look current
		clear(t.slots)
		clear(t.ptrs)
		t.gen = 1
	}
}

// ref returns the ref of s and whether s is new, in which case it was
// given the next ref.
func (t *symbolTable) ref(s string) (uint32, bool) {
	if s == "" {
		return 0, false
	}
	addr := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	p := &t.ptrs[(uint64(addr)*0x9e3779b97f4a7c15)>>(64-ptrBits)]
	if p.addr == addr && p.n == uint32(len(s)) && p.stamp>>refBits == t.gen {
		return p.stamp & refMask, false
	}
	ref, isNew := t.lookup(s)
	*p = ptrSlot{addr: addr, n: uint32(len(s)), stamp: t.stamp(ref)}
	return ref, isNew
}

// lookup is ref by content.
func (t *symbolTable) lookup(s string) (uint32, bool) {
	h := maphash.String(t.seed, s)
	mask := uint64(len(t.slots) - 1)
	tag := uint32(h >> 32)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.stamp>>refBits != t.gen {
			ref := uint32(len(t.strs))
			if ref >= maxRefs {
				panic("prw: more than 1<<24 symbols in one request")
			}
			*sl = symbolSlot{hash: tag, stamp: t.stamp(ref)}
			t.strs = append(t.strs, s)
			if 2*len(t.strs) > len(t.slots) {
				t.grow()
			}
			return ref, true
		}
		if sl.hash == tag && t.strs[sl.stamp&refMask] == s {
			return sl.stamp & refMask, false
		}
	}
}

// truncate removes the symbols from ref n on. They are the last ones
// inserted, so no probe sequence of an older symbol runs through their
// slots, and emptying those slots keeps the table consistent.
func (t *symbolTable) truncate(n int) {
	if n >= len(t.strs) {
		return
	}
	mask := uint64(len(t.slots) - 1)
	for ref := len(t.strs) - 1; ref >= n; ref-- {
		h := maphash.String(t.seed, t.strs[ref])
		for i := h & mask; t.slots[i].stamp>>refBits == t.gen; i = (i + 1) & mask {
			if t.slots[i].stamp == t.stamp(uint32(ref)) {
				t.slots[i].stamp = 0
				break
			}
		}
	}
	clear(t.strs[n:])
	t.strs = t.strs[:n]
	clear(t.ptrs) // may name removed refs
}

// grow doubles the slots, keeping the load factor at most one half.
func (t *symbolTable) grow() {
	t.slots = make([]symbolSlot, 2*len(t.slots)) // generation 0: empty
	mask := uint64(len(t.slots) - 1)
	for ref, s := range t.strs[1:] {
		h := maphash.String(t.seed, s)
		i := h & mask
		for t.slots[i].stamp>>refBits == t.gen {
			i = (i + 1) & mask
		}
		t.slots[i] = symbolSlot{hash: uint32(h >> 32), stamp: t.stamp(uint32(ref + 1))}
	}
}
