// Package auth decides which tenant a request belongs to.
//
// With a tenants file, every request must carry a credential of one
// tenant: a token (Authorization: Bearer <token>, as Prometheus'
// remote_write authorization sends it, or Authorization: Token <token>, as
// Telegraf's InfluxDB outputs send it) or a user and password (HTTP basic
// auth, or InfluxDB 1.x's u and p parameters on its endpoints). The tenant
// is the credential's; a request naming another one in X-Scope-OrgID is
// refused. Refusals never say whether a tenant, user or token exists.
//
// Without a tenants file, requests are trusted: X-Scope-OrgID names the
// tenant, then the InfluxDB org or db of line-protocol writes, then
// "anonymous".
//
// Secrets are stored as hashes (docs/auth.md): "sha256:<hex>" for tokens
// and machine-generated passwords, bcrypt ("$2b$…") for passwords people
// choose. A tenant may hold several credentials at once, so a new one can
// be rolled out before the old one is removed. The file is reloaded when
// it changes; a file that does not load is refused and the last good one
// stays in force.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/weir-metrics/weir/pkg/filewatch"
	"github.com/weir-metrics/weir/pkg/tenant"
)

// Error is a request refused for its credentials or tenant. It carries the
// HTTP status to answer (it satisfies promapi.HTTPError) and the reason
// label of refusal metrics.
type Error struct {
	Status int
	Reason string
	Msg    string
}

func (e *Error) Error() string   { return e.Msg }
func (e *Error) HTTPStatus() int { return e.Status }

// Reasons of refusals.
const (
	ReasonMissing  = "missing_credentials"
	ReasonInvalid  = "invalid_credentials"
	ReasonMismatch = "tenant_mismatch"
	ReasonTenant   = "invalid_tenant"
)

var (
	errMissing = &Error{Status: http.StatusUnauthorized, Reason: ReasonMissing,
		Msg: "authentication required: send a token (Authorization: Bearer <token> or Token <token>) or basic auth credentials"}
	errInvalid = &Error{Status: http.StatusUnauthorized, Reason: ReasonInvalid,
		Msg: "invalid credentials"}
	errMismatch = &Error{Status: http.StatusForbidden, Reason: ReasonMismatch,
		Msg: "X-Scope-OrgID does not name the tenant of the credentials; leave it out or send the credentials' own tenant"}
)

// Options configure an Authenticator.
type Options struct {
	// TenantsFile is the tenants file; empty turns authentication off.
	TenantsFile string
	// ReloadInterval is how often the file is checked for changes.
	ReloadInterval time.Duration
	Logger         *slog.Logger
	// Registerer receives weir_auth_* and the file's reload metrics; nil
	// registers none.
	Registerer prometheus.Registerer
}

// Authenticator resolves the tenant of requests. Safe for concurrent use.
type Authenticator struct {
	log     *slog.Logger
	watcher *filewatch.Watcher
	cur     atomic.Pointer[table] // nil when authentication is off

	// verified caches bcrypt verifications that succeeded, keyed by a
	// SHA-256 of user and password, so that a sender pays the bcrypt cost
	// once per credential, not once per request. Cleared on reload.
	mu       sync.Mutex
	verified map[[sha256.Size]byte]string
	// bcryptSlots bounds concurrent bcrypt comparisons, so that a flood of
	// wrong passwords costs at most half the cores.
	bcryptSlots chan struct{}

	refused *prometheus.CounterVec
}

// maxVerified bounds the verification cache; it is emptied when full.
const maxVerified = 4096

// New returns an authenticator. With a tenants file it loads it and fails
// when it does not load.
func New(o Options) (*Authenticator, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{
		log:         o.Logger.With("component", "auth"),
		verified:    map[[sha256.Size]byte]string{},
		bcryptSlots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "weir_auth_refused_requests_total",
			Help: "Requests refused for their credentials or tenant, by reason (missing_credentials, invalid_credentials, tenant_mismatch, invalid_tenant).",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonMissing, ReasonInvalid, ReasonMismatch, ReasonTenant} {
		a.refused.WithLabelValues(r)
	}
	if o.Registerer != nil {
		if err := o.Registerer.Register(a.refused); err != nil {
			return nil, fmt.Errorf("registering auth metrics: %w", err)
		}
	}
	if o.TenantsFile == "" {
		return a, nil
	}
	w, err := filewatch.New(filewatch.Options{
		Name:       "tenants",
		Paths:      []string{o.TenantsFile},
		Load:       func(c [][]byte) error { return a.Load(c[0]) },
		Interval:   o.ReloadInterval,
		Logger:     o.Logger,
		Registerer: o.Registerer,
	})
	if err != nil {
		return nil, err
	}
	a.watcher = w
	return a, nil
}

// Enabled reports whether requests must authenticate.
func (a *Authenticator) Enabled() bool { return a.cur.Load() != nil }

// Run reloads the tenants file when it changes, until ctx is done.
func (a *Authenticator) Run(ctx context.Context) {
	if a.watcher != nil {
		a.watcher.Run(ctx)
	}
}

// Reload checks the tenants file for changes at once (Run does so every
// ReloadInterval). It returns the error that refused new content.
func (a *Authenticator) Reload() error {
	if a.watcher == nil {
		return nil
	}
	_, err := a.watcher.Check()
	return err
}

// Tenants lists the tenants of the file in force, sorted.
func (a *Authenticator) Tenants() []string {
	t := a.cur.Load()
	if t == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(t.tenants))
}

// Tenant resolves the tenant of a remote-write or query request.
func (a *Authenticator) Tenant(r *http.Request) (string, error) {
	return a.resolve(r, "", false)
}

// InfluxTenant resolves the tenant of an InfluxDB endpoint's request: it
// also accepts InfluxDB 1.x's u and p query parameters, and without
// authentication it takes the tenant from db (the request's db or org)
// when X-Scope-OrgID names none.
func (a *Authenticator) InfluxTenant(r *http.Request, db string) (string, error) {
	return a.resolve(r, db, true)
}

func (a *Authenticator) resolve(r *http.Request, hint string, influx bool) (string, error) {
	// Several X-Scope-OrgID headers are ambiguous (a proxy that appends
	// rather than replaces, or a sender trying its luck): refused rather
	// than read one way here and another way elsewhere.
	if vs := r.Header.Values(tenant.OrgIDHeader); len(vs) > 1 {
		return "", a.refuse(&Error{Status: http.StatusBadRequest, Reason: ReasonTenant, Msg: "more than one X-Scope-OrgID header; send exactly one, or none"})
	}
	orgID := r.Header.Get(tenant.OrgIDHeader)
	t := a.cur.Load()
	if t == nil {
		id := orgID
		if id == "" {
			id = hint
		}
		if id == "" {
			id = tenant.Anonymous
		}
		if err := tenant.ValidateID(id); err != nil {
			return "", a.refuse(&Error{Status: http.StatusBadRequest, Reason: ReasonTenant, Msg: "tenant: " + err.Error()})
		}
		return id, nil
	}
	id, err := a.authenticate(t, r, influx)
	if err != nil {
		return "", a.refuse(err)
	}
	if orgID != "" && orgID != id {
		return "", a.refuse(errMismatch)
	}
	return id, nil
}

func (a *Authenticator) refuse(err *Error) *Error {
	a.refused.WithLabelValues(err.Reason).Inc()
	return err
}

// authenticate finds the tenant of the request's credentials.
func (a *Authenticator) authenticate(t *table, r *http.Request, influx bool) (string, *Error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		cred = strings.TrimSpace(cred)
		switch strings.ToLower(scheme) {
		case "bearer":
			return a.byToken(t, cred)
		case "token":
			// InfluxDB 1.x also reads "Token user:password".
			if id, err := a.byToken(t, cred); err == nil {
				return id, nil
			}
			if user, pass, ok := strings.Cut(cred, ":"); ok {
				return a.byPassword(t, user, pass)
			}
			return "", errInvalid
		case "basic":
			user, pass, ok := r.BasicAuth()
			if !ok {
				return "", errInvalid
			}
			return a.byPassword(t, user, pass)
		}
		return "", errInvalid
	}
	if influx {
		if q := r.URL.Query(); q.Has("u") || q.Has("p") {
			return a.byPassword(t, q.Get("u"), q.Get("p"))
		}
	}
	return "", errMissing
}

func (a *Authenticator) byToken(t *table, token string) (string, *Error) {
	if token == "" {
		return "", errInvalid
	}
	if id, ok := t.tokens[sha256.Sum256([]byte(token))]; ok {
		return id, nil
	}
	return "", errInvalid
}

// byPassword checks a user and password. A password that is a tenant's
// token is accepted too, whatever the user, as InfluxDB 2's 1.x
// compatibility API does, so Telegraf's influxdb output can send a token as
// its password.
func (a *Authenticator) byPassword(t *table, user, pass string) (string, *Error) {
	if pass == "" {
		return "", errInvalid
	}
	u, known := t.users[user]
	if known {
		sum := sha256.Sum256([]byte(pass))
		for _, s := range u.secrets {
			if s.bcrypt == nil {
				if subtle.ConstantTimeCompare(sum[:], s.sha[:]) == 1 {
					return u.tenant, nil
				}
				continue
			}
			if a.checkBcrypt(s.bcrypt, user, pass) {
				return u.tenant, nil
			}
		}
	} else if t.dummy != nil {
		// Take as long as a known user would, so timing does not tell
		// which users exist.
		a.checkBcrypt(t.dummy, user, pass)
	}
	if id, ok := t.tokens[sha256.Sum256([]byte(pass))]; ok {
		return id, nil
	}
	return "", errInvalid
}

func (a *Authenticator) checkBcrypt(hash []byte, user, pass string) bool {
	key := sha256.Sum256([]byte(string(hash) + "\x00" + user + "\x00" + pass))
	a.mu.Lock()
	_, ok := a.verified[key]
	a.mu.Unlock()
	if ok {
		return true
	}
	a.bcryptSlots <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pass))
	<-a.bcryptSlots
	if err != nil {
		return false
	}
	a.mu.Lock()
	if len(a.verified) >= maxVerified {
		clear(a.verified)
	}
	a.verified[key] = user
	a.mu.Unlock()
	return true
}

// table is a loaded tenants file.
type table struct {
	tenants map[string]struct{}
	tokens  map[[sha256.Size]byte]string // SHA-256 of a token → tenant
	users   map[string]*user
	// dummy is a bcrypt hash at the highest cost of the file's, compared
	// against for unknown users; nil when the file has no bcrypt hash.
	dummy []byte
}

type user struct {
	tenant  string
	secrets []secret
}

type secret struct {
	sha    [sha256.Size]byte
	bcrypt []byte // set for bcrypt hashes
}

// fileLayout is the tenants file:
//
//	tenants:
//	  team-a:
//	    tokens:
//	      - sha256:5e88…   # prometheus, since 2026-11
//	    users:
//	      telegraf:
//	        - $2b$10$…
type fileLayout struct {
	Tenants map[string]struct {
		Tokens []string            `yaml:"tokens"`
		Users  map[string][]string `yaml:"users"`
	} `yaml:"tenants"`
}

// Load parses a tenants file and puts it in force; the verification cache
// is emptied, so a removed password stops working at once.
func (a *Authenticator) Load(data []byte) error {
	t, err := parse(data)
	if err != nil {
		return err
	}
	a.mu.Lock()
	clear(a.verified)
	a.mu.Unlock()
	a.cur.Store(t)
	a.log.Info("tenants file in force", "tenants", len(t.tenants), "tokens", len(t.tokens), "users", len(t.users))
	return nil
}

func parse(data []byte) (*table, error) {
	var f fileLayout
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("tenants file is empty; it must list the tenants (docs/auth.md)")
		}
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	t := &table{
		tenants: map[string]struct{}{},
		tokens:  map[[sha256.Size]byte]string{},
		users:   map[string]*user{},
	}
	var errs []error
	maxCost := 0
	for _, id := range slices.Sorted(maps.Keys(f.Tenants)) {
		ten := f.Tenants[id]
		if err := tenant.ValidateID(id); err != nil {
			errs = append(errs, fmt.Errorf("tenants file: %w", err))
			continue
		}
		t.tenants[id] = struct{}{}
		for i, h := range ten.Tokens {
			s, err := parseHash(h)
			if err == nil && s.bcrypt != nil {
				err = errors.New("tokens must be sha256 hashes (`weir auth token` makes one); bcrypt is for passwords")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("tenants file: tenant %s: tokens[%d]: %w", id, i, err))
				continue
			}
			if other, dup := t.tokens[s.sha]; dup {
				errs = append(errs, fmt.Errorf("tenants file: tenant %s: tokens[%d]: the same token is also a token of tenant %s", id, i, other))
				continue
			}
			t.tokens[s.sha] = id
		}
		for _, name := range slices.Sorted(maps.Keys(ten.Users)) {
			if name == "" || strings.Contains(name, ":") {
				errs = append(errs, fmt.Errorf("tenants file: tenant %s: user %q: names must be non-empty and contain no ':'", id, name))
				continue
			}
			if other, dup := t.users[name]; dup {
				errs = append(errs, fmt.Errorf("tenants file: tenant %s: user %s is also a user of tenant %s; user names must be unique", id, name, other.tenant))
				continue
			}
			u := &user{tenant: id}
			for i, h := range ten.Users[name] {
				s, err := parseHash(h)
				if err != nil {
					errs = append(errs, fmt.Errorf("tenants file: tenant %s: user %s: password %d: %w", id, name, i, err))
					continue
				}
				if s.bcrypt != nil {
					cost, _ := bcrypt.Cost(s.bcrypt)
					maxCost = max(maxCost, cost)
				}
				u.secrets = append(u.secrets, s)
			}
			if len(u.secrets) == 0 {
				errs = append(errs, fmt.Errorf("tenants file: tenant %s: user %s has no password hash", id, name))
				continue
			}
			t.users[name] = u
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if maxCost > 0 {
		var err error
		if t.dummy, err = bcrypt.GenerateFromPassword([]byte("weir: no such user"), maxCost); err != nil {
			return nil, fmt.Errorf("tenants file: %w", err)
		}
	}
	return t, nil
}

// HashPrefix starts a SHA-256 hash in the tenants file.
const HashPrefix = "sha256:"

func parseHash(h string) (secret, error) {
	switch {
	case strings.HasPrefix(h, HashPrefix):
		b, err := hex.DecodeString(h[len(HashPrefix):])
		if err != nil || len(b) != sha256.Size {
			return secret{}, fmt.Errorf("%q is not sha256: followed by 64 hex digits", abbreviate(h))
		}
		var s secret
		copy(s.sha[:], b)
		return s, nil
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return secret{}, fmt.Errorf("%q is not a valid bcrypt hash: %v", abbreviate(h), err)
		}
		return secret{bcrypt: []byte(h)}, nil
	}
	return secret{}, fmt.Errorf("%q is neither sha256:<hex> nor a bcrypt hash; store hashes, never secrets (`weir auth hash`)", abbreviate(h))
}

// abbreviate keeps error messages from echoing a whole secret that was
// pasted where its hash belongs.
func abbreviate(s string) string {
	if len(s) > 12 {
		return s[:8] + "…"
	}
	return s
}
