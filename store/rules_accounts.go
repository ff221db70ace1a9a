package store

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
)

// NewServer is srv as it is created: its creation time, and the
// defaults of what was left unset (a Live server, no link tracking, the
// default retention, a random inbound hash). The backend gives the ID.
func NewServer(srv Server, now time.Time) Server {
	srv.ID = 0
	srv.CreatedAt = now.UTC()
	if srv.DeliveryType == "" {
		srv.DeliveryType = DeliveryLive
	}
	if srv.TrackLinks == "" {
		srv.TrackLinks = TrackLinksNone
	}
	if srv.RetentionDays == 0 {
		srv.RetentionDays = DefaultRetentionDays
	}
	if srv.InboundHash == "" {
		var h [16]byte
		_, _ = rand.Read(h[:])
		srv.InboundHash = hex.EncodeToString(h[:])
	}
	return srv
}

// UpdatedServer is next, an edit of prev, with what no edit changes kept
// from prev: its account, creation time, delivery type and inbound hash.
func UpdatedServer(prev, next Server) Server {
	next.ID, next.AccountID, next.CreatedAt = prev.ID, prev.AccountID, prev.CreatedAt
	next.DeliveryType, next.InboundHash = prev.DeliveryType, prev.InboundHash
	return next
}

// SameServerName reports whether two servers' names clash: names are
// unique within an account, whatever their case.
func SameServerName(a, b Server) bool {
	return a.ID != b.ID && a.AccountID == b.AccountID && strings.EqualFold(a.Name, b.Name)
}

// SortServers orders servers as listings show them: pinned first, then
// by name without regard to case, then by ID.
func SortServers(list []Server) {
	slices.SortFunc(list, func(a, b Server) int {
		if a.Pinned != b.Pinned {
			if a.Pinned {
				return -1
			}
			return 1
		}
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// SortTokens orders tokens oldest first, then by prefix.
func SortTokens(list []Token) {
	slices.SortFunc(list, func(a, b Token) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Prefix, b.Prefix)
	})
}

// Revocable decides whether the token of all (one account's or one
// server's tokens) whose secret starts with prefix may be revoked, and
// returns it: ErrNotFound when there is none, allow's refusal (allow may
// be nil), and ErrLastOwner for an account's last owner token.
func Revocable(all []Token, prefix string, allow func(Token) error) (Token, error) {
	i := slices.IndexFunc(all, func(t Token) bool { return t.Prefix == prefix })
	if prefix == "" || i < 0 {
		return Token{}, ErrNotFound
	}
	t := all[i]
	if allow != nil {
		if err := allow(t); err != nil {
			return Token{}, err
		}
	}
	if t.Kind != KindAccount || t.Role != RoleOwner {
		return t, nil
	}
	for _, o := range all {
		if o.Role == RoleOwner && o.Prefix != t.Prefix {
			return t, nil
		}
	}
	return Token{}, ErrLastOwner
}

// ServerColors are Postmark's server colours, in their canonical case.
var ServerColors = []string{"Purple", "Blue", "Turquoise", "Green", "Red", "Yellow", "Grey", "Orange"}

// ServerColor returns the colour named v regardless of case and
// surrounding space.
func ServerColor(v string) (string, bool) {
	for _, c := range ServerColors {
		if strings.EqualFold(c, strings.TrimSpace(v)) {
			return c, true
		}
	}
	return "", false
}

// MaxServerName bounds a server's name, in characters.
const MaxServerName = 100

// ServerName checks a server's name and returns it trimmed.
func ServerName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", errors.New("the server's Name must not be empty")
	case len([]rune(name)) > MaxServerName:
		return "", fmt.Errorf("the server's Name must be at most %d characters", MaxServerName)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", errors.New("the server's Name must not contain control characters")
	}
	return name, nil
}
