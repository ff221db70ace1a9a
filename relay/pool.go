package relay

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// session is an open SMTP session, ready for MAIL.
type session struct {
	key      string // the destination it serves; "" if not to be kept
	conn     net.Conn
	sc       *smtp.Client
	host     string
	ip       netip.Addr
	tls      TLSInfo
	tlsError string
	uses     int         // messages sent over it
	idle     *time.Timer // while kept: ends it when the timeout passes
}

// quitTimeout bounds the wait for the reply to QUIT, which nothing waits
// for.
const quitTimeout = 5 * time.Second

// quit says goodbye and closes the connection.
func (s *session) quit() {
	s.sc.CommandTimeout = quitTimeout
	s.sc.Quit()
	s.conn.Close()
}

// sessionPool keeps sessions between messages, by destination, newest
// last. Its methods are safe for concurrent use, and on a nil pool.
type sessionPool struct {
	timeout time.Duration
	limit   int

	mu   sync.Mutex
	idle map[string][]*session
}

// get takes the most recently used session kept for key, or nil.
func (p *sessionPool) get(key string) *session {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	if len(list) == 0 {
		return nil
	}
	// Whoever removes a session from the pool owns it: if its timer has
	// just fired, expire finds it gone and leaves it alone.
	s := list[len(list)-1]
	p.remove(s)
	s.idle.Stop()
	return s
}

// put keeps s for ReuseTimeout.
func (p *sessionPool) put(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.idle = time.AfterFunc(p.timeout, func() { p.expire(s) })
	p.idle[s.key] = append(p.idle[s.key], s)
}

func (p *sessionPool) expire(s *session) {
	p.mu.Lock()
	kept := p.remove(s)
	p.mu.Unlock()
	if kept {
		s.quit()
	}
}

// remove drops s from the pool and reports whether it was there. The
// caller holds p.mu.
func (p *sessionPool) remove(s *session) bool {
	list := p.idle[s.key]
	for i, other := range list {
		if other == s {
			list = append(list[:i], list[i+1:]...)
			if len(list) == 0 {
				delete(p.idle, s.key)
			} else {
				p.idle[s.key] = list
			}
			return true
		}
	}
	return false
}

// closeAll ends every kept session, and returns when they are closed.
func (p *sessionPool) closeAll() {
	if p == nil {
		return
	}
	p.mu.Lock()
	var all []*session
	for _, list := range p.idle {
		for _, s := range list {
			s.idle.Stop()
			all = append(all, s)
		}
	}
	clear(p.idle)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(s.quit)
	}
	wg.Wait()
}
