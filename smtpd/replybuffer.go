package smtpd

import (
	"net"
	"sync"
	"time"
)

// ReplyBuffer holds what a server writes on a connection until it next
// reads from it (or flushes, or closes). go-smtp flushes every reply line,
// so a pipelining client's MAIL, RCPT and DATA (and the previous message's
// final 250) would cost four writes, and four wake-ups of the client;
// held until the server waits for input, they go out in one. This is
// always safe, because a client sends nothing more before it has the
// replies it waits for, and the server reads only when it wants the
// client's next bytes: Postfix's smtpd flushes its output the same way.
//
// A server that waits for something other than the client (in-flight
// room, say) after writing a reply must Flush first.
type ReplyBuffer struct {
	net.Conn
	mu  sync.Mutex // go-smtp's Shutdown writes its 421 from another goroutine
	out []byte
	err error
}

// replyBufferMax is how much is held before a write goes out anyway (a
// long EHLO or HELP answer, or TLS records).
const replyBufferMax = 64 << 10

// NewReplyBuffer wraps c.
func NewReplyBuffer(c net.Conn) *ReplyBuffer { return &ReplyBuffer{Conn: c} }

// Write holds b until the next Read, Flush or Close. An error of an
// earlier, held write is returned here.
func (c *ReplyBuffer) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if len(c.out)+len(b) > replyBufferMax {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	c.out = append(c.out, b...)
	return len(b), nil
}

// Flush writes what is held.
func (c *ReplyBuffer) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *ReplyBuffer) flushLocked() error {
	if len(c.out) > 0 && c.err == nil {
		_, c.err = c.Conn.Write(c.out)
		c.out = c.out[:0]
	}
	return c.err
}

// Read writes what is held, then reads.
func (c *ReplyBuffer) Read(b []byte) (int, error) {
	if err := c.Flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

// flushOnClose bounds how long Close waits to send what is held.
const flushOnClose = 2 * time.Second

// Close writes what is held, then closes. It sets its own write deadline:
// crypto/tls, closing, sets the deadline to now after its close_notify,
// which would otherwise lose a held 221 (or 421). When another goroutine
// is in the middle of a write (to a client that does not read), Close
// does not wait for it: closing the connection is what ends that write.
func (c *ReplyBuffer) Close() error {
	if c.mu.TryLock() {
		if len(c.out) > 0 {
			c.Conn.SetWriteDeadline(time.Now().Add(flushOnClose))
			c.flushLocked()
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}
