// Package dkim is Postern's DKIM: a domain's Ed25519 and RSA keys, the
// records that publish them, checking those records in DNS, and signing.
package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
	now    func() time.Time
}

type signingKey struct {
	selector string
	signer   crypto.Signer
}

// NewSigner parses the private keys of a domain once, for many messages:
// the first Ed25519 and the first RSA key of keys that have a private key
// (a domain may have only one); at least one is needed.
func NewSigner(domain string, keys []store.DKIMKey) (*Signer, error) {
	s := &Signer{domain: domain, now: time.Now}
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
	h := message.Split(msg)
	headerKeys := presentHeaders(h.Fields)
	if len(headerKeys) == 0 || headerKeys[0] != "From" {
		return nil, errors.New("dkim: the message has no From field")
	}
	// Naming From once more than it occurs makes a From added later on
	// break the signature (RFC 6376 §8.15).
	headerKeys = append(headerKeys, "From")

	// What every key signs: the body's hash, in the bh= tag, and the
	// signed fields, to which each signature adds its own field.
	bodyHash := sha256.New()
	hashRelaxedBody(bodyHash, h.Body)
	bh := base64.StdEncoding.EncodeToString(bodyHash.Sum(nil))
	var signedFields []byte
	for _, f := range pickFields(h.Fields, headerKeys) {
		if f != nil {
			signedFields = append(signedFields, relaxedHeader(f)...)
		}
	}
	hList := strings.Join(headerKeys, ":")
	stamp := strconv.FormatInt(s.now().Unix(), 10)

	var out bytes.Buffer
	for _, k := range s.keys {
		algorithm, opts := "rsa-sha256", crypto.Hash(crypto.SHA256)
		if _, ok := k.signer.(ed25519.PrivateKey); ok {
			// RFC 8463 §3: Ed25519 signs the SHA-256 digest as its
			// message (PureEdDSA), so no hash is named to Sign.
			algorithm, opts = "ed25519-sha256", crypto.Hash(0)
		}
		field := signatureField(algorithm, s.domain, k.selector, stamp, hList, bh)
		digest := sha256.New()
		digest.Write(signedFields)
		digest.Write(bytes.TrimSuffix(relaxedHeader(field), crlf))
		sig, err := k.signer.Sign(rand.Reader, digest.Sum(nil), opts)
		if err != nil {
			return nil, fmt.Errorf("dkim: %s signature: %w", algorithm, err)
		}
		out.Write(field)
		writeFolded(&out, base64.StdEncoding.EncodeToString(sig))
		out.Write(crlf)
	}
	return out.Bytes(), nil
}

// signatureField is a DKIM-Signature field up to its empty b= tag, each
// tag on a line of its own when the line would grow past 76 characters.
func signatureField(algorithm, domain, selector, stamp, hList, bh string) []byte {
	tags := []string{"v=1", "a=" + algorithm, "c=relaxed/relaxed", "d=" + domain, "s=" + selector, "t=" + stamp, "h=" + hList, "bh=" + bh}
	var b bytes.Buffer
	b.WriteString("DKIM-Signature:")
	line := len("DKIM-Signature:")
	for _, t := range tags {
		if line+len(t)+2 > 76 {
			b.WriteString("\r\n")
			line = 0
		}
		b.WriteString(" " + t + ";")
		line += len(t) + 2
	}
	b.WriteString("\r\n b=")
	return b.Bytes()
}

// writeFolded writes the b= tag's base64 value in lines of at most 72
// characters: folding whitespace is allowed inside it (RFC 6376 §3.5).
func writeFolded(b *bytes.Buffer, v string) {
	const width = 72
	first := width - len(" b=")
	for len(v) > first {
		b.WriteString(v[:first])
		b.WriteString("\r\n  ")
		v = v[first:]
		first = width - 2
	}
	b.WriteString(v)
}

// presentHeaders returns the names of signedHeaders among fields, in
// the order of signedHeaders, each as many times as it occurs there so
// that every occurrence is signed.
func presentHeaders(fields []message.Field) []string {
	counts := make(map[string]int, len(signedHeaders))
	for _, f := range fields {
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
