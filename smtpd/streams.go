package smtpd

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/postern/postern/store"
)

// stream finds the stream X-PM-Message-Stream named: outbound, which
// every server has, or one the server created and has not archived.
func (s *session) stream(id string) (store.Stream, *Error) {
	if id == DefaultStream {
		return store.OutboundStream(*s.server), nil
	}
	st, err := s.cfg.Store.Stream(s.server.ID, id)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && !st.ArchivedAt.IsZero()):
		return st, errUnknownStream(id)
	case err != nil:
		return st, errStreamCheck(err)
	}
	return st, nil
}

// checkStreamRecipients applies a stream's rules to the recipients: a
// Broadcasts message goes to one recipient (its unsubscribe link is
// theirs), and none may be suppressed in the stream (unsubscribed, or
// suppressed by the API's user).
func (s *session) checkStreamRecipients(st store.Stream) *Error {
	if st.Type == store.StreamBroadcasts && len(s.rcpts) != 1 {
		return errBroadcastRecipients(st.ID, len(s.rcpts))
	}
	for _, rcpt := range s.rcpts {
		sup, found, err := s.cfg.Store.StreamSuppressed(s.server.ID, st.ID, rcpt)
		if err != nil {
			return errStreamCheck(err)
		}
		if found {
			return errInactiveRecipient(rcpt, store.Suppression{Reason: fmt.Sprintf("suppressed in stream %s (%s)", st.ID, sup.Origin), Since: sup.CreatedAt})
		}
	}
	return nil
}

func errStreamCheck(cause error) *Error {
	e := reply(codeLocalError, 4, 3, 0, "Temporary failure checking the message stream; try again later")
	e.Cause = cause
	e.Reason = ReasonStorage
	return e
}

func errBroadcastRecipients(stream string, n int) *Error {
	return reply(codeMailboxUnavail, 5, 5, 3, fmt.Sprintf(
		"A message of the Broadcasts stream %q goes to one recipient, so that its unsubscribe link is theirs; this one has %d", stream, n)).because(ReasonTooManyRecipients)
}

// withUnsubscribe adds List-Unsubscribe (RFC 2369) with link and
// List-Unsubscribe-Post (RFC 8058) to a stored message, after its
// Received field, before signing.
func withUnsubscribe(stored []byte, link string) []byte {
	end := 0
	for {
		i := bytes.Index(stored[end:], []byte("\r\n"))
		if i < 0 {
			return stored
		}
		end += i + 2
		if end >= len(stored) || (stored[end] != ' ' && stored[end] != '\t') {
			break
		}
	}
	out := make([]byte, 0, len(stored)+len(link)+80)
	out = append(out, stored[:end]...)
	out = append(out, "List-Unsubscribe: "+link+"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"...)
	return append(out, stored[end:]...)
}
