package upstream

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// echoIdle closes an echo connection that has been silent this long, so a
// forgotten client never pins a goroutine forever.
const echoIdle = 2 * time.Minute

// StartTCPEcho serves a tcpbin.com-like echo: every byte received is sent
// back until the client closes its side. With TLS (and client-certificate
// options) it is the 4243/4244 variant.
func StartTCPEcho(opts ...Option) (*Server, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	ln, err := listen(o)
	if err != nil {
		return nil, err
	}
	cfg := o.tlsConfig()
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					o.logger.Warn("tcp echo accept", "addr", ln.Addr(), "err", err)
				}
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				echo(o, c, cfg)
			}()
		}
	}()
	return &Server{
		kind: "tcp-echo",
		addr: ln.Addr().String(),
		tls:  cfg != nil,
		close: func() error {
			err := ln.Close()
			mu.Lock()
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
			return err
		},
	}, nil
}

func echo(o *options, raw net.Conn, cfg *tls.Config) {
	defer raw.Close()
	var c net.Conn = raw
	if cfg != nil {
		tc := tls.Server(raw, cfg)
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			// A refused handshake is the expected outcome of several
			// negative tests, so it is only worth a debug line.
			o.logger.Debug("tcp echo handshake", "remote", raw.RemoteAddr(), "err", err)
			return
		}
		c = tc
	}
	buf := make([]byte, 32<<10)
	for {
		_ = raw.SetDeadline(time.Now().Add(echoIdle))
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				// Client half-closed (nc -q): we have echoed everything; close
				// our side so the client sees EOF too.
				if tc, ok := c.(*tls.Conn); ok {
					_ = tc.CloseWrite()
				}
			}
			return
		}
	}
}
