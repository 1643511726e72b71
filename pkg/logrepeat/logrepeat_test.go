package logrepeat

import (
	"testing"
	"time"
)

// TestAdmit lets the first line of a kind through, holds back the others
// within the interval, counts them in the next admitted line, and keeps
// kinds apart.
func TestAdmit(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(5 * time.Second)
	l.Now = func() time.Time { return now }
	if ok, held := l.Admit("a"); !ok || held != 0 {
		t.Fatalf("first line of a kind: admitted %v, held %d", ok, held)
	}
	for i := 0; i < 999; i++ {
		if ok, _ := l.Admit("a"); ok {
			t.Fatalf("line %d within the interval admitted", i)
		}
	}
	if ok, _ := l.Admit("b"); !ok {
		t.Fatal("another kind was held back by the first")
	}
	now = now.Add(5 * time.Second)
	if ok, held := l.Admit("a"); !ok || held != 999 {
		t.Fatalf("after the interval: admitted %v, held %d, want true, 999", ok, held)
	}
	if ok, _ := l.Admit("a"); ok {
		t.Fatal("the interval did not start again")
	}
}
