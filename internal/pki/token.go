package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// LoadOrCreateServiceAccountKey returns the ES256 key that signs
// service-account tokens, creating dir/service-account.key on first use.
// Rotating it would invalidate every token in circulation, so an unreadable
// file is an error, never a reason to generate a new key.
func LoadOrCreateServiceAccountKey(dir string) (*ecdsa.PrivateKey, error) {
	path := filepath.Join(dir, ServiceAccountKeyFile)
	b, err := readIfExists(path)
	if err != nil {
		return nil, err
	}
	if b != nil {
		key, err := ParseKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("loading service-account key %s: %w", path, err)
		}
		if key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("loading service-account key %s: curve %s, want P-256", path, key.Curve.Params().Name)
		}
		return key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating service-account key: %w", err)
	}
	out, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, out, keyPerm); err != nil {
		return nil, fmt.Errorf("saving service-account key: %w", err)
	}
	return key, nil
}

// JoinToken is the secret an agent presents to join the cluster, in k3s's
// "secure" format:
//
//	K10<ca-hash>::server:<secret>
//
// where ca-hash is the hex SHA-256 of the CA certificate PEM (CAHash) so an
// agent that only has the token can pin the CA it fetches over an untrusted
// connection, and secret is 32 hex characters (128 random bits). The secret
// alone is what the API server's static token table holds; a bare secret is
// also accepted by ParseJoinToken (then CAHash is empty and there is nothing
// to pin).
type JoinToken struct {
	CAHash string
	Secret string
}

const (
	joinTokenPrefix = "K10"
	joinTokenUser   = "server"
)

// String renders the token in the full K10 form, or the bare secret when the
// CA hash is unknown.
func (t JoinToken) String() string {
	if t.CAHash == "" {
		return t.Secret
	}
	return joinTokenPrefix + t.CAHash + "::" + joinTokenUser + ":" + t.Secret
}

// CAHash is the pin an agent checks the CA certificate against.
func CAHash(caPEM []byte) string {
	sum := sha256.Sum256(caPEM)
	return hex.EncodeToString(sum[:])
}

// VerifyCA checks caPEM against the pinned hash. A token without a hash pins
// nothing and accepts any CA: callers that require pinning check CAHash.
func (t JoinToken) VerifyCA(caPEM []byte) error {
	if t.CAHash == "" {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(CAHash(caPEM)), []byte(strings.ToLower(t.CAHash))) != 1 {
		return errors.New("ca certificate does not match the hash pinned in the join token")
	}
	return nil
}

// ParseJoinToken parses the K10 form or a bare secret.
func ParseJoinToken(s string) (JoinToken, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return JoinToken{}, errors.New("parsing join token: empty")
	}
	if !strings.HasPrefix(s, joinTokenPrefix) || !strings.Contains(s, "::") {
		if strings.ContainsAny(s, ": \t\n") {
			return JoinToken{}, errors.New("parsing join token: bare secret contains separators")
		}
		return JoinToken{Secret: s}, nil
	}
	hash, rest, _ := strings.Cut(strings.TrimPrefix(s, joinTokenPrefix), "::")
	user, secret, ok := strings.Cut(rest, ":")
	switch {
	case !ok || user != joinTokenUser:
		return JoinToken{}, fmt.Errorf("parsing join token: want %q credentials", joinTokenUser)
	case secret == "":
		return JoinToken{}, errors.New("parsing join token: empty secret")
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
		return JoinToken{}, errors.New("parsing join token: ca hash is not a hex sha-256")
	}
	return JoinToken{CAHash: strings.ToLower(hash), Secret: secret}, nil
}

// LoadOrCreateJoinToken returns the join token in path (normally
// <data-dir>/token), creating a random one on first use. An existing secret
// is kept; the file is rewritten when its CA hash is missing or stale so it
// always pins caPEM.
func LoadOrCreateJoinToken(path string, caPEM []byte) (JoinToken, error) {
	b, err := readIfExists(path)
	if err != nil {
		return JoinToken{}, err
	}
	want := CAHash(caPEM)
	var tok JoinToken
	if b != nil {
		if tok, err = ParseJoinToken(string(b)); err != nil {
			return JoinToken{}, fmt.Errorf("loading join token %s: %w", path, err)
		}
		if tok.CAHash == want {
			return tok, nil
		}
	} else {
		raw := make([]byte, 16)
		if _, err := rand.Read(raw); err != nil {
			return JoinToken{}, fmt.Errorf("generating join token: %w", err)
		}
		tok.Secret = hex.EncodeToString(raw)
	}
	tok.CAHash = want
	if err := writeFileAtomic(path, []byte(tok.String()+"\n"), keyPerm); err != nil {
		return JoinToken{}, fmt.Errorf("saving join token: %w", err)
	}
	return tok, nil
}
