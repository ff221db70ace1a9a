package bench

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// outcome is what became of one message.
type outcome struct {
	accepted bool
	refused  string // the reply code ("550 5.1.1") that refused it
	err      error  // neither accepted nor refused: I/O, protocol
	endData  time.Time
	reply    time.Time
	closed   bool // the connection is gone (error, 421): dial again
}

// sender is one SMTP connection, as the bench's sessions use it.
type sender interface {
	// send sends message seq; with more, it may send the next message's
	// MAIL, RCPT and DATA in the same write as this one's content (RFC
	// 2920 allows the content first in a group), so that each message
	// takes one write and one read.
	send(seq int64, deadline time.Time, more bool) outcome
	quit()
}

// replyError is an SMTP reply that ends a message or a connection.
type replyError struct {
	key  string // "550 5.1.1"
	line string
}

func (e *replyError) Error() string { return "server replied " + e.line }

// dialConfig is what every connection of a run needs.
type dialConfig struct {
	addr     string
	token    string
	startTLS bool
	tls      *tls.Config
	timeout  time.Duration
	maker    *messageMaker
}

const heloName = "bench.postern.invalid"

// rawSender speaks SMTP over a bufio pair: MAIL, RCPT and DATA go in one
// write when the server offers PIPELINING, and nothing is allocated per
// message on the way to a 250.
type rawSender struct {
	cfg        *dialConfig
	conn       net.Conn
	r          *bufio.Reader
	w          *bufio.Writer
	pipelining bool
	pending    bool      // the next message's envelope has been sent with this one
	envelope   []byte    // MAIL, RCPT, DATA lines
	lines      [3][]byte // the same, one by one
	header     []byte    // scratch for a message's header section
}

func dialRaw(cfg *dialConfig, deadline time.Time) (*rawSender, error) {
	conn, err := net.DialTimeout("tcp", cfg.addr, cfg.timeout)
	if err != nil {
		return nil, err
	}
	s := &rawSender{cfg: cfg, conn: conn, r: bufio.NewReaderSize(conn, 16<<10), w: bufio.NewWriterSize(conn, 32<<10)}
	if err := s.setup(deadline); err != nil {
		conn.Close()
		return nil, err
	}
	s.lines = [3][]byte{
		fmt.Appendf(nil, "MAIL FROM:<%s>\r\n", cfg.maker.from),
		fmt.Appendf(nil, "RCPT TO:<%s>\r\n", cfg.maker.to),
		[]byte("DATA\r\n"),
	}
	s.envelope = append(append(append([]byte{}, s.lines[0]...), s.lines[1]...), s.lines[2]...)
	return s, nil
}

func (s *rawSender) setup(deadline time.Time) error {
	s.conn.SetDeadline(deadline)
	if _, err := s.expect(220); err != nil {
		return err
	}
	ext, err := s.ehlo()
	if err != nil {
		return err
	}
	if s.cfg.startTLS {
		if _, ok := ext["STARTTLS"]; !ok {
			return errors.New("the server does not offer STARTTLS")
		}
		if err := s.cmd(220, "STARTTLS"); err != nil {
			return err
		}
		tc := tls.Client(s.conn, s.cfg.tls)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
		s.conn = tc
		s.r.Reset(tc)
		s.w.Reset(tc)
		if ext, err = s.ehlo(); err != nil {
			return err
		}
	}
	if s.cfg.token != "" {
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + s.cfg.token + "\x00" + s.cfg.token))
		if err := s.cmd(235, "AUTH PLAIN "+ir); err != nil {
			return err
		}
	}
	_, s.pipelining = ext["PIPELINING"]
	return nil
}

func (s *rawSender) ehlo() (map[string]string, error) {
	if _, err := s.w.WriteString("EHLO " + heloName + "\r\n"); err != nil {
		return nil, err
	}
	if err := s.w.Flush(); err != nil {
		return nil, err
	}
	ext := make(map[string]string)
	for first := true; ; first = false {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 || !strings.HasPrefix(line, "250") {
			return nil, replyErr(line)
		}
		if !first && len(line) > 4 {
			k, v, _ := strings.Cut(line[4:], " ")
			ext[strings.ToUpper(k)] = v
		}
		if len(line) < 4 || line[3] != '-' {
			return ext, nil
		}
	}
}

// cmd sends a line and wants a reply with code.
func (s *rawSender) cmd(code int, line string) error {
	if _, err := s.w.WriteString(line + "\r\n"); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	_, err := s.expect(code)
	return err
}

// expect reads a reply: an error unless its code is want.
func (s *rawSender) expect(want int) (int, error) {
	code, last, err := s.readReply()
	if err != nil {
		return 0, err
	}
	if code != want {
		return code, replyErr(last)
	}
	return code, nil
}

// readReply reads a (possibly multi-line) reply; last is its last line,
// valid until the next read.
func (s *rawSender) readReply() (int, string, error) {
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		if len(line) < 5 || line[0] < '1' || line[0] > '5' {
			return 0, "", fmt.Errorf("malformed reply %q", line)
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if line[3] == ' ' || line[3] == '\r' {
			return code, strings.TrimRight(string(line), "\r\n"), nil
		}
	}
}

// readCode is readReply that converts the line only if it is not want.
func (s *rawSender) readCode(want int) (int, *replyError, error) {
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(line) < 4 || line[0] < '1' || line[0] > '5' {
			return 0, nil, fmt.Errorf("malformed reply %q", line)
		}
		if line[3] == '-' {
			continue
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if code == want {
			return code, nil, nil
		}
		return code, replyErr(strings.TrimRight(string(line), "\r\n")), nil
	}
}

// replyErr keys a reply by its code and, if it has one, enhanced code.
func replyErr(line string) *replyError {
	key := line
	if len(key) > 3 {
		key = line[:3]
		if f := strings.Fields(line[4:]); len(f) > 0 && isEnhanced(f[0]) {
			key += " " + f[0]
		}
	}
	return &replyError{key: key, line: line}
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return false
		}
	}
	return true
}

func failed(err error) outcome {
	var re *replyError
	if errors.As(err, &re) {
		return outcome{refused: re.key, closed: strings.HasPrefix(re.key, "421")}
	}
	return outcome{err: err, closed: true}
}

func (s *rawSender) send(seq int64, deadline time.Time, more bool) outcome {
	s.conn.SetDeadline(deadline)
	var mailErr, rcptErr, dataErr *replyError
	var code int
	var err error
	if s.pipelining {
		if !s.pending {
			if _, err = s.w.Write(s.envelope); err == nil {
				err = s.w.Flush()
			}
		}
		s.pending = false
		if err == nil {
			_, mailErr, err = s.readCode(250)
		}
		if err == nil {
			_, rcptErr, err = s.readCode(250)
		}
		if err == nil {
			code, dataErr, err = s.readCode(354)
		}
	} else {
		for i, want := range [3]int{250, 250, 354} {
			if _, err = s.w.Write(s.lines[i]); err == nil {
				err = s.w.Flush()
			}
			var re *replyError
			if err == nil {
				code, re, err = s.readCode(want)
			}
			if err != nil || re != nil {
				mailErr, rcptErr, dataErr = pick(i, re, mailErr, rcptErr, dataErr)
				break
			}
		}
	}
	if err != nil {
		return outcome{err: err, closed: true}
	}
	if mailErr != nil || rcptErr != nil || dataErr != nil {
		if dataErr == nil && code == 354 {
			// DATA was accepted with no valid recipient: end it empty.
			if _, err := s.w.WriteString(".\r\n"); err == nil {
				s.w.Flush()
				s.readCode(250)
			}
		}
		first := firstOf(mailErr, rcptErr, dataErr)
		o := failed(first)
		if mailErr == nil && !o.closed {
			o = s.rset(o)
		}
		return o
	}
	s.header = s.cfg.maker.appendHeader(s.header[:0], seq, time.Now())
	s.w.Write(s.header)
	s.w.Write(s.cfg.maker.body(seq))
	s.w.WriteString(".\r\n")
	if more && s.pipelining {
		s.w.Write(s.envelope)
		s.pending = true
	}
	if err := s.w.Flush(); err != nil {
		return outcome{err: err, closed: true}
	}
	end := time.Now()
	_, re, err := s.readCode(250)
	if err != nil {
		return outcome{err: err, closed: true}
	}
	reply := time.Now()
	if re != nil {
		o := failed(re)
		o.endData, o.reply = end, reply
		return o
	}
	return outcome{accepted: true, endData: end, reply: reply}
}

func pick(i int, re, m, r, d *replyError) (*replyError, *replyError, *replyError) {
	switch i {
	case 0:
		m = re
	case 1:
		r = re
	default:
		d = re
	}
	return m, r, d
}

func firstOf(es ...*replyError) error {
	for _, e := range es {
		if e != nil {
			return e
		}
	}
	return nil
}

// rset ends a transaction that MAIL opened and a refusal left open.
func (s *rawSender) rset(o outcome) outcome {
	if _, err := s.w.WriteString("RSET\r\n"); err != nil {
		o.closed = true
		return o
	}
	if err := s.w.Flush(); err != nil {
		o.closed = true
		return o
	}
	if _, re, err := s.readCode(250); err != nil || re != nil {
		o.closed = true
	}
	return o
}

func (s *rawSender) quit() {
	if s.pending { // the server may be reading a message: just hang up
		s.conn.Close()
		return
	}
	s.conn.SetDeadline(time.Now().Add(s.cfg.timeout))
	s.w.WriteString("QUIT\r\n")
	if s.w.Flush() == nil {
		s.readReply()
	}
	s.conn.Close()
}

// goSender sends with go-smtp's client, which does not pipeline; kept to
// compare (see the package's benchmark).
type goSender struct {
	cfg    *dialConfig
	conn   net.Conn
	c      *smtp.Client
	header []byte
}

func dialGo(cfg *dialConfig, deadline time.Time) (*goSender, error) {
	conn, err := net.DialTimeout("tcp", cfg.addr, cfg.timeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(deadline)
	s := &goSender{cfg: cfg, conn: conn}
	if err := s.setup(); err != nil {
		conn.Close()
		return nil, goErr(err)
	}
	return s, nil
}

func (s *goSender) setup() error {
	if s.cfg.startTLS {
		c, err := smtp.NewClientStartTLS(s.conn, s.cfg.tls)
		if err != nil {
			return err
		}
		s.c = c
	} else {
		s.c = smtp.NewClient(s.conn)
	}
	if err := s.c.Hello(heloName); err != nil {
		return err
	}
	if s.cfg.token != "" {
		if err := s.c.Auth(sasl.NewPlainClient("", s.cfg.token, s.cfg.token)); err != nil {
			return err
		}
	}
	return nil
}

func goErr(err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		line := strconv.Itoa(se.Code)
		if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
			line += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		return replyErr(line + " " + se.Message)
	}
	return err
}

func (s *goSender) send(seq int64, deadline time.Time, _ bool) outcome {
	s.conn.SetDeadline(deadline)
	m := s.cfg.maker
	if err := s.c.Mail(m.from, nil); err != nil {
		return failed(goErr(err))
	}
	if err := s.c.Rcpt(m.to, nil); err != nil {
		o := failed(goErr(err))
		if !o.closed && s.c.Reset() != nil {
			o.closed = true
		}
		return o
	}
	w, err := s.c.Data()
	if err != nil {
		o := failed(goErr(err))
		if !o.closed && s.c.Reset() != nil {
			o.closed = true
		}
		return o
	}
	s.header = m.appendHeader(s.header[:0], seq, time.Now())
	w.Write(s.header)
	w.Write(m.body(seq))
	end := time.Now()
	err = w.Close()
	reply := time.Now()
	if err != nil {
		o := failed(goErr(err))
		o.endData, o.reply = end, reply
		return o
	}
	return outcome{accepted: true, endData: end, reply: reply}
}

func (s *goSender) quit() {
	s.conn.SetDeadline(time.Now().Add(s.cfg.timeout))
	s.c.Quit()
	s.c.Close()
}
