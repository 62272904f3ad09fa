package testnet

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestFreePortIsFreshAndBindable(t *testing.T) {
	a, b := FreePort(t), FreePort(t)
	if a == b {
		t.Fatalf("FreePort returned %d twice", a)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", a))
	if err != nil {
		t.Fatalf("port %d not bindable: %v", a, err)
	}
	l.Close()
}

func TestEchoThroughEchoServer(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", EchoServer(t))
	EchoThrough(t, addr, "ping\n", 5*time.Second)
	// A listener that answers something else is an error naming both.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("pong\n"))
			c.Close()
		}
	}()
	if err := echoOnce(l.Addr().String(), "ping\n"); err == nil || !strings.Contains(err.Error(), "pong") {
		t.Errorf("wrong echo gave %v, want an error naming what came back", err)
	}
}
