package tenant

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"a", "team-a", "Team_42", strings.Repeat("x", MaxIDLength)} {
		if err := ValidateID(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for id, why := range map[string]string{
		"":                                 "empty",
		"a.b":                              `'.'`,
		"a/b":                              `'/'`,
		"ümlaut":                           "character",
		"a b":                              `' '`,
		strings.Repeat("x", MaxIDLength+1): "maximum",
	} {
		err := ValidateID(id)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%q: want an error mentioning %s, got %v", id, why, err)
		}
	}
}

func TestContextAndHeader(t *testing.T) {
	if _, err := FromContext(context.Background()); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("want ErrNoTenant, got %v", err)
	}
	id, err := FromContext(WithID(context.Background(), "t1"))
	if err != nil || id != "t1" {
		t.Fatalf("got %q %v", id, err)
	}
	h := http.Header{}
	if FromHeader(h) != Anonymous {
		t.Fatal("no header must mean anonymous")
	}
	h.Set(OrgIDHeader, "t2")
	if FromHeader(h) != "t2" {
		t.Fatal("header ignored")
	}
}
