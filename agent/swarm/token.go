package swarm

import (
	"crypto/sha256"
	"fmt"
	"math/big"
	"strings"
)

// tokenCADigest returns the root CA digest a join token pins
// (SWMTKN-1-<digest>-<secret>).
func tokenCADigest(token string) (string, bool) {
	parts := strings.Split(token, "-")
	if len(parts) != 4 || parts[0] != "SWMTKN" || parts[1] != "1" || parts[2] == "" {
		return "", false
	}
	return parts[2], true
}

// caDigest is the digest swarmkit puts in join tokens: the SHA-256 of the
// root CA's PEM, in base 36, padded to 50 digits.
func caDigest(rootCAPEM string) string {
	sum := sha256.Sum256([]byte(rootCAPEM))
	var n big.Int
	n.SetBytes(sum[:])
	return fmt.Sprintf("%050s", n.Text(36))
}
