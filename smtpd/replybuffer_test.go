package smtpd

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// replyBufferPair returns a ReplyBuffer over the server end of a loopback
// TCP connection, the counter beneath it, and the client end.
func replyBufferPair(t *testing.T) (*ReplyBuffer, *countingConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingConn{Conn: server}
	rb := NewReplyBuffer(counted)
	t.Cleanup(func() { rb.Close() })
	return rb, counted, client
}

func TestReplyBufferHoldsRepliesUntilRead(t *testing.T) {
	rb, counted, client := replyBufferPair(t)
	for _, line := range []string{"250 2.1.0 Sender OK\r\n", "250 2.1.5 Recipient OK\r\n", "354 Go ahead\r\n"} {
		if _, err := io.WriteString(rb, line); err != nil {
			t.Fatal(err)
		}
	}
	if n := counted.writes.Load(); n != 0 {
		t.Fatalf("%d writes reached the socket before the server read; want 0", n)
	}
	// The server now waits for the message: its read sends the three
	// replies in one write.
	go func() {
		buf := make([]byte, 64)
		rb.Read(buf)
	}()
	want := "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 Go ahead\r\n"
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("client read: %v", err)
	}
	if string(got) != want {
		t.Fatalf("client got %q, want %q", got, want)
	}
	if n := counted.writes.Load(); n != 1 {
		t.Fatalf("%d writes reached the socket; want 1", n)
	}
	client.Write([]byte("x")) // let the server's read return
}

func TestReplyBufferFlush(t *testing.T) {
	rb, counted, client := replyBufferPair(t)
	io.WriteString(rb, "354 Go ahead\r\n")
	if err := rb.Flush(); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(client).ReadString('\n')
	if err != nil || line != "354 Go ahead\r\n" {
		t.Fatalf("client got %q, %v", line, err)
	}
	if n := counted.writes.Load(); n != 1 {
		t.Fatalf("%d writes; want 1", n)
	}
}

// crypto/tls sets the write deadline to now before it closes the
// connection beneath it; a held 221 must still reach the client.
func TestReplyBufferCloseSendsHeldReplyPastDeadline(t *testing.T) {
	rb, _, client := replyBufferPair(t)
	io.WriteString(rb, "221 2.0.0 Bye\r\n")
	rb.SetWriteDeadline(time.Now())
	if err := rb.Close(); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "221 2.0.0 Bye\r\n" {
		t.Fatalf("client got %q, %v", got, err)
	}
}

func TestReplyBufferLargeWritesGoOut(t *testing.T) {
	rb, counted, client := replyBufferPair(t)
	big := make([]byte, replyBufferMax)
	go io.Copy(io.Discard, client)
	rb.Write([]byte("250-first\r\n"))
	if _, err := rb.Write(big); err != nil {
		t.Fatal(err)
	}
	// Holding both would pass the bound: the first went out.
	if n := counted.writes.Load(); n != 1 {
		t.Fatalf("%d writes after passing the bound; want 1", n)
	}
}

// A Close from another goroutine (the session's lifetime, a shutdown)
// does not wait behind a write stuck on a client that does not read: it
// ends that write.
func TestReplyBufferCloseDuringStuckWrite(t *testing.T) {
	rb, counted, _ := replyBufferPair(t) // the client never reads
	wrote := make(chan error, 1)
	go func() {
		big := make([]byte, 1<<20)
		var err error
		for err == nil {
			_, err = rb.Write(big) // each goes out: past replyBufferMax
		}
		wrote <- err
	}()
	time.Sleep(200 * time.Millisecond) // the socket buffers fill
	closed := make(chan struct{})
	go func() {
		rb.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		counted.Conn.Close() // end the write, so the test itself ends
		t.Fatal("Close waited behind a stuck write")
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("the stuck write succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stuck write did not end at Close")
	}
}
