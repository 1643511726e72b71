// Package tenant defines tenant IDs: their validation and how they travel in
// a request's context.
package tenant

import (
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Anonymous is the tenant of requests that name none while authentication
// is off.
const Anonymous = "anonymous"

// MaxIDLength bounds tenant IDs so that every topic name built from one
// (weir.<tenant>.series and the like) stays far below Kafka's 249
// character limit.
const MaxIDLength = 64

// ErrNoTenant is returned by FromContext when the context carries no tenant.
var ErrNoTenant = errors.New("no tenant in request context")

// ValidateID checks that id can name Kafka topics, directories and metric
// label values unchanged: 1–64 characters of [A-Za-z0-9_-]. Dots are
// refused because they separate the parts of a topic name.
func ValidateID(id string) error {
	if id == "" {
		return errors.New("tenant ID is empty")
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("tenant ID %.20q… is %d characters long; the maximum is %d", id, len(id), MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			continue
		}
		return fmt.Errorf("tenant ID %q has the character %q at position %d; use only letters, digits, '_' and '-'", id, c, i)
	}
	return nil
}

type contextKey struct{}

// WithID returns a copy of ctx that carries the tenant id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the tenant carried by ctx.
func FromContext(ctx context.Context) (string, error) {
	id, ok := ctx.Value(contextKey{}).(string)
	if !ok || id == "" {
		return "", ErrNoTenant
	}
	return id, nil
}

// OrgIDHeader is the header that names a request's tenant, as in Cortex,
// Mimir, Loki and Thanos.
const OrgIDHeader = "X-Scope-OrgID"

// FromHeader returns the tenant a request names in OrgIDHeader, or
// Anonymous when it names none. The caller validates it.
func FromHeader(h http.Header) string {
	if id := h.Get(OrgIDHeader); id != "" {
		return id
	}
	return Anonymous
}
