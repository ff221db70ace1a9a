// Package dkim is Postern's DKIM: a domain's Ed25519 and RSA keys, the
// records that publish them, checking those records in DNS, and signing.
package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/store"
)

// Keys are a domain's two DKIM keys, as GenerateKeys makes them.
// Messages are signed with both: Ed25519 (RFC 8463) is small and cheap,
// RSA is what every verifier knows.
type Keys struct {
	Domain  string
	Ed25519 store.DKIMKey
	RSA     store.DKIMKey
}

// List is the keys as a store.Domain keeps them, Ed25519 first.
func (k Keys) List() []store.DKIMKey { return []store.DKIMKey{k.Ed25519, k.RSA} }

// rsaKeyBits is the size of generated RSA keys: 2048 is what large
// receivers expect; larger keys no longer fit one TXT character-string
// and cost more per signature.
const rsaKeyBits = 2048

// GenerateKeys makes a new Ed25519 key and a new RSA-2048 key for domain.
//
// Selectors read "pstrn-ed-YYYYMMDD-xxxx" and "pstrn-rsa-YYYYMMDD-xxxx":
// "pstrn" tells whose key a record is, the date (UTC) when it was made,
// and xxxx, random and shared by the pair, keeps two rotations on one day
// from reusing a selector, whose old record resolvers may still cache.
func GenerateKeys(domain string) (Keys, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if domain == "" {
		return Keys{}, errors.New("dkim: no domain")
	}
	var suffix [2]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return Keys{}, err
	}
	stamp := time.Now().UTC().Format("20060102") + "-" + hex.EncodeToString(suffix[:])

	edPublic, edPrivate, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, fmt.Errorf("dkim: generate Ed25519 key: %w", err)
	}
	rsaPrivate, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
	if err != nil {
		return Keys{}, fmt.Errorf("dkim: generate RSA key: %w", err)
	}
	rsaPublic, err := x509.MarshalPKIXPublicKey(&rsaPrivate.PublicKey)
	if err != nil {
		return Keys{}, fmt.Errorf("dkim: encode RSA public key: %w", err)
	}

	// RFC 8463 §4.2: an Ed25519 record holds the bare 32-byte key, an RSA
	// record the DER SubjectPublicKeyInfo (RFC 6376 §3.6.1).
	ed, err := newKey(domain, "ed25519", "pstrn-ed-"+stamp, edPrivate, edPublic)
	if err != nil {
		return Keys{}, err
	}
	rs, err := newKey(domain, "rsa", "pstrn-rsa-"+stamp, rsaPrivate, rsaPublic)
	if err != nil {
		return Keys{}, err
	}
	return Keys{Domain: domain, Ed25519: ed, RSA: rs}, nil
}

// Generate is GenerateKeys as a store.Domain keeps the keys (the API's
// Config.GenerateKeys).
func Generate(domain string) ([]store.DKIMKey, error) {
	keys, err := GenerateKeys(domain)
	if err != nil {
		return nil, err
	}
	return keys.List(), nil
}

func newKey(domain, algorithm, selector string, private crypto.PrivateKey, public []byte) (store.DKIMKey, error) {
	der, err := x509.MarshalPKCS8PrivateKey(private)
	if err != nil {
		return store.DKIMKey{}, fmt.Errorf("dkim: encode %s private key: %w", algorithm, err)
	}
	return store.DKIMKey{
		Algorithm:  algorithm,
		Selector:   selector,
		PrivateKey: der,
		Host:       selector + "._domainkey." + domain,
		TextValue:  "v=DKIM1; k=" + algorithm + "; p=" + base64.StdEncoding.EncodeToString(public),
	}, nil
}

// signedHeaders are the header fields a signature covers, when present:
// those a reader sees or that change how the message displays, From
// first (RFC 6376 §5.4.1). Trace and transport fields stay out: servers
// on the way add and rewrite them.
var signedHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID",
	"Reply-To", "In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Unsubscribe", "List-Unsubscribe-Post", "List-ID", "Feedback-ID",
}

// Signer signs messages with a domain's keys. It is safe for concurrent
// use.
type Signer struct {
	domain string
	keys   []signingKey // RSA first, see Sign
}

type signingKey struct {
	selector string
	signer   crypto.Signer
}

// NewSigner parses the private keys of a domain once, for many messages:
// the first Ed25519 and the first RSA key of keys that have a private key
// (a domain may have only one); at least one is needed.
func NewSigner(domain string, keys []store.DKIMKey) (*Signer, error) {
	s := &Signer{domain: domain}
	var rsaKey, edKey *store.DKIMKey
	for i, k := range keys {
		switch {
		case len(k.PrivateKey) == 0:
		case k.Algorithm == "rsa" && rsaKey == nil:
			rsaKey = &keys[i]
		case k.Algorithm == "ed25519" && edKey == nil:
			edKey = &keys[i]
		}
	}
	for _, k := range []*store.DKIMKey{rsaKey, edKey} {
		if k == nil {
			continue
		}
		parsed, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("dkim: %s key %s: %w", k.Algorithm, k.Selector, err)
		}
		var signer crypto.Signer
		switch key := parsed.(type) {
		case *rsa.PrivateKey:
			signer = key
		case ed25519.PrivateKey:
			signer = key
		default:
			return nil, fmt.Errorf("dkim: key %s is a %T, want RSA or Ed25519", k.Selector, parsed)
		}
		s.keys = append(s.keys, signingKey{selector: k.Selector, signer: signer})
	}
	if len(s.keys) == 0 {
		return nil, fmt.Errorf("dkim: no Ed25519 or RSA key for %s", domain)
	}
	return s, nil
}

// Algorithms names the algorithm of each key, as DKIM's k= tag does.
func (s *Signer) Algorithms() []string {
	out := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		switch k.signer.(type) {
		case ed25519.PrivateKey:
			out = append(out, "ed25519")
		default:
			out = append(out, "rsa")
		}
	}
	return out
}

// Sign signs msg, a whole message with CRLF line ends, with every key of
// the domain, relaxed/relaxed, and returns the DKIM-Signature fields to
// send before it. Returning the fields rather than the signed message
// lets the caller send them ahead of the stored bytes without a copy.
//
// The RSA signature comes first: verifiers that check only the topmost
// signature tend to be those that know nothing of Ed25519.
func (s *Signer) Sign(msg []byte) ([]byte, error) {
	headerKeys := presentHeaders(msg)
	if len(headerKeys) == 0 || headerKeys[0] != "From" {
		return nil, errors.New("dkim: the message has no From field")
	}
	// Naming From once more than it occurs makes a From added later on
	// break the signature (RFC 6376 §8.15).
	headerKeys = append(headerKeys, "From")

	signers := make([]*msgdkim.Signer, 0, len(s.keys))
	writers := make([]io.Writer, 0, len(s.keys))
	closeAll := func() {
		for _, sg := range signers {
			sg.Close()
		}
	}
	for _, k := range s.keys {
		sg, err := msgdkim.NewSigner(&msgdkim.SignOptions{
			Domain:                 s.domain,
			Selector:               k.selector,
			Signer:                 k.signer,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
			BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
			HeaderKeys:             headerKeys,
		})
		if err != nil {
			closeAll()
			return nil, err
		}
		signers = append(signers, sg)
		writers = append(writers, sg)
	}
	if _, err := io.MultiWriter(writers...).Write(msg); err != nil {
		closeAll()
		return nil, fmt.Errorf("dkim: %w", err)
	}
	var fields bytes.Buffer
	for _, sg := range signers {
		if err := sg.Close(); err != nil {
			closeAll()
			return nil, fmt.Errorf("dkim: %w", err)
		}
		fields.WriteString(sg.Signature())
	}
	return fields.Bytes(), nil
}

// presentHeaders returns the names of signedHeaders in msg's header, in
// the order of signedHeaders, each as many times as it occurs there so
// that every occurrence is signed.
func presentHeaders(msg []byte) []string {
	counts := make(map[string]int, len(signedHeaders))
	for _, f := range message.Split(msg).Fields {
		counts[strings.ToLower(f.Name)]++
	}
	var keys []string
	for _, h := range signedHeaders {
		for range counts[strings.ToLower(h)] {
			keys = append(keys, h)
		}
	}
	return keys
}

// SignAs signs raw with the keys of d, for mail Postern sends itself
// (TLS reports, DMARC digests): the DKIM-Signature fields, or nil when d
// has no keys or they cannot sign.
func SignAs(d store.Domain, raw []byte) []byte {
	if len(d.Keys) == 0 {
		return nil
	}
	signer, err := NewSigner(d.Name, d.Keys)
	if err != nil {
		return nil
	}
	sig, err := signer.Sign(raw)
	if err != nil {
		return nil
	}
	return sig
}
