package testnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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

func TestLineServer(t *testing.T) {
	port := LineServer(t, "hello")
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello\n" {
		t.Errorf("read %q, %v; want one line then EOF", b, err)
	}
}

func TestGRPCHealthServerServes(t *testing.T) {
	addr := GRPCHealthServer(t)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check: %v, %v; want SERVING", resp, err)
	}
}
