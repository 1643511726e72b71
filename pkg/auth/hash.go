package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// bcryptCost is the cost of hashes HashPassword makes: bcrypt's default,
// about 50 ms a check. Tests lower it.
var bcryptCost = bcrypt.DefaultCost

// TokenPrefix starts the tokens NewToken makes, so secret scanners and
// people can tell a weir token when they see one.
const TokenPrefix = "weir_"

// NewToken returns a new random token: 256 bits, URL-safe.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashToken returns the tenants file entry of a token, or of a
// machine-generated password: "sha256:<hex>". SHA-256 is right for secrets
// with 256 random bits (nobody can guess them, hashed or not) and costs
// nothing per request.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return HashPrefix + hex.EncodeToString(sum[:])
}

// HashPassword returns the bcrypt hash of a password people chose, which
// resists guessing if the tenants file leaks. weir verifies it once per
// credential and remembers the result, so senders do not pay the cost per
// request.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}
