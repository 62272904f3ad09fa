package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST from <linux/netfilter_ipv4.h>.
const soOriginalDst = 80

// ErrNoOriginalDst means the socket has no recorded original destination.
var ErrNoOriginalDst = errors.New("no original destination")

// OriginalDst asks an accepted TCP socket for its original destination with
// getsockopt(SOL_IP, SO_ORIGINAL_DST) into a 16-byte sockaddr_in: the exact
// call Envoy's original_dst listener filter makes.
func OriginalDst(c syscall.Conn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ap netip.AddrPort
	var opErr error
	if err := rc.Control(func(fd uintptr) { ap, opErr = OriginalDstFD(int(fd)) }); err != nil {
		return netip.AddrPort{}, err
	}
	return ap, opErr
}

// OriginalDstFD is OriginalDst on a raw file descriptor.
func OriginalDstFD(fd int) (netip.AddrPort, error) {
	var sa [16]byte
	l := uint32(len(sa))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IP, soOriginalDst,
		uintptr(unsafe.Pointer(&sa[0])), uintptr(unsafe.Pointer(&l)), 0)
	switch {
	case e == unix.ENOENT:
		return netip.AddrPort{}, ErrNoOriginalDst
	case e != 0:
		return netip.AddrPort{}, fmt.Errorf("getsockopt(SO_ORIGINAL_DST): %w", e)
	case l < 8 || binary.NativeEndian.Uint16(sa[0:2]) != unix.AF_INET:
		return netip.AddrPort{}, fmt.Errorf("getsockopt(SO_ORIGINAL_DST): unexpected answer (len %d)", l)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:4])), nil
}
