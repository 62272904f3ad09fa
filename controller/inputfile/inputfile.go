// Package inputfile reads the files operators hand to meshext (drop-directory
// resources, the DNS hosts file) without trusting what sits at the path. Only
// regular files are read, a symlink only when it resolves to one; the file is
// opened non-blocking and read up to a size limit. A FIFO, a device (a symlink
// to /dev/zero), a socket, a directory or an oversized file gets an error that
// says what it is, so one bad entry can neither block the reader nor exhaust
// its memory.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// DefaultMaxSize bounds one input file unless configured otherwise. Resource
// files are small (Kubernetes caps one object at about 1.5 MiB); 16 MiB holds
// thousands of resources while keeping a runaway file's cost bounded.
const DefaultMaxSize int64 = 16 << 20

var (
	// ErrNotRegular is wrapped by Read's error for anything but a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge is wrapped by Read's error for a file over the limit.
	ErrTooLarge = errors.New("file too large")
)

// Read returns the content of the regular file at path, at most max bytes
// (max <= 0 means DefaultMaxSize). Special files are refused before they are
// opened (opening some devices has effects); the open is non-blocking and
// the opened file is checked again, so a swap in between is caught too.
func Read(path string, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxSize
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := Check(st.Mode(), st.Size(), max); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err = f.Stat()
	if err != nil {
		return nil, err
	}
	if err := Check(st.Mode(), st.Size(), max); err != nil {
		return nil, err
	}
	// One allocation of the expected size; the file may still grow while it
	// is read, which the limit catches.
	b := make([]byte, 0, st.Size()+1)
	r := io.LimitReader(f, max+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: it grew past the %s limit while being read", ErrTooLarge, FormatSize(max))
	}
	return b, nil
}

// Check returns why a file of this mode and size is not read (nil when it is).
func Check(mode fs.FileMode, size, max int64) error {
	if !mode.IsRegular() {
		return fmt.Errorf("%w: it is %s", ErrNotRegular, Describe(mode))
	}
	if max > 0 && size > max {
		return fmt.Errorf("%w: %s, over the %s limit", ErrTooLarge, FormatSize(size), FormatSize(max))
	}
	return nil
}

// Describe names a file type for a message ("a named pipe (FIFO)").
func Describe(mode fs.FileMode) string {
	switch {
	case mode.IsRegular():
		return "a regular file"
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case mode&fs.ModeSocket != 0:
		return "a unix socket"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

// FormatSize prints a byte count the way ParseSize reads it.
func FormatSize(n int64) string {
	for _, u := range sizeUnits {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

var sizeUnits = []struct {
	suffix string
	n      int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// ParseSize reads a byte count: a plain number, or one with a B, KiB, MiB or
// GiB suffix (K, M, G and KB, MB, GB are read as the binary units too).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	upper := strings.ToUpper(t)
	for _, u := range []struct {
		suffixes []string
		n        int64
	}{
		{[]string{"GIB", "GB", "G"}, 1 << 30},
		{[]string{"MIB", "MB", "M"}, 1 << 20},
		{[]string{"KIB", "KB", "K"}, 1 << 10},
		{[]string{"B"}, 1},
	} {
		found := false
		for _, suf := range u.suffixes {
			if strings.HasSuffix(upper, suf) {
				t, mult, found = strings.TrimSpace(t[:len(t)-len(suf)]), u.n, true
				break
			}
		}
		if found {
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size (e.g. 16MiB, 512KiB, 1048576)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}

// SizeValue is a flag.Value for a byte count in ParseSize's syntax.
type SizeValue int64

func (v *SizeValue) String() string { return FormatSize(int64(*v)) }

func (v *SizeValue) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return err
	}
	*v = SizeValue(n)
	return nil
}
