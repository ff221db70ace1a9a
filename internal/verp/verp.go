// Package verp makes and reads the per-message return paths of sent
// mail (VERP): bounce+<server>.<message>.<mac>@<domain>, so that a bounce
// arriving later names the message and server it is about, and nobody
// can make one up for another's message.
package verp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strconv"
	"strings"
)

// Prefix starts the local part of return paths.
const Prefix = "bounce+"

// Local is the local part of the return path of a message of a server.
func Local(key []byte, serverID int64, messageID string) string {
	ids := strconv.FormatInt(serverID, 10) + "." + messageID
	return Prefix + ids + "." + mac(key, ids)
}

func mac(key []byte, ids string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("return-path:" + ids))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil)[:10]))
}

// Parse reads a local part back to its server and message.
func Parse(key []byte, local string) (serverID int64, messageID string, ok bool) {
	rest, found := strings.CutPrefix(strings.ToLower(local), Prefix)
	if !found {
		return 0, "", false
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return 0, "", false
	}
	ids, sig := rest[:dot], rest[dot+1:]
	if !hmac.Equal([]byte(sig), []byte(mac(key, ids))) {
		return 0, "", false
	}
	server, message, found := strings.Cut(ids, ".")
	id, err := strconv.ParseInt(server, 10, 64)
	if !found || err != nil || id <= 0 || message == "" {
		return 0, "", false
	}
	return id, message, true
}
