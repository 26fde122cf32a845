package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// TokenPrefix starts every join token; the number after it is the format's
// version.
const TokenPrefix = "CMLTKN-1-"

// Token is a join token: CMLTKN-1-<CA fingerprint>-<id>-<secret>, all hex.
// The fingerprint lets an agent check the coordinator before it sends the
// secret (the same SHA-256 that `openssl x509 -fingerprint -sha256` prints
// for ca.crt); the id finds the token's record; only a hash of the secret is
// stored.
type Token struct {
	// CAFingerprint is the SHA-256 of the CA certificate, 64 hex digits.
	CAFingerprint string
	// ID names the token in listings and revocation, 12 hex digits.
	ID string
	// Secret is 32 hex digits (128 bits).
	Secret string
}

// ErrTokenFormat: a string is not a join token.
var ErrTokenFormat = errors.New("not a CloudML join token (want CMLTKN-1-<fingerprint>-<id>-<secret>, as 'cloudml-client token create' prints)")

// NewToken makes a token with a fresh id and secret for the CA with
// fingerprint.
func NewToken(caFingerprint string) Token {
	return Token{CAFingerprint: caFingerprint, ID: randHex(6), Secret: randHex(16)}
}

// String is the token as users pass it.
func (t Token) String() string {
	return TokenPrefix + t.CAFingerprint + "-" + t.ID + "-" + t.Secret
}

// ParseToken parses a join token, ignoring surrounding white space.
func ParseToken(s string) (Token, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), TokenPrefix)
	if !ok {
		return Token{}, ErrTokenFormat
	}
	parts := strings.Split(rest, "-")
	if len(parts) != 3 || !isHex(parts[0], 64) || !isHex(parts[1], 12) || !isHex(parts[2], 32) {
		return Token{}, ErrTokenFormat
	}
	return Token{CAFingerprint: parts[0], ID: parts[1], Secret: parts[2]}, nil
}

// SecretHash is what the coordinator stores of a token's secret.
func SecretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches compares a secret with a stored hash in constant time.
func SecretMatches(secret, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(SecretHash(secret)), []byte(hash)) == 1
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Redact shortens a token for logs and listings: its id only.
func Redact(t Token) string { return fmt.Sprintf("CMLTKN-1-…-%s-…", t.ID) }

// JoinTokenEnv is the environment variable through which a provider hands
// an agent its join token (never argv, which every user can read). The
// agent also reads --token-file.
const JoinTokenEnv = "CLOUDML_JOIN_TOKEN"
