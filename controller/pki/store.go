package pki

import (
	"errors"
	"fmt"
	"github.com/meshext/meshext/controller/inputfile"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Files of a CA kept in a directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Modes of what this package writes.
const (
	PrivateDirMode os.FileMode = 0o700
	KeyFileMode    os.FileMode = 0o600
	CertFileMode   os.FileMode = 0o644
)

// EnsurePrivateDir makes dir (and missing parents) with mode 0700. An
// existing dir must be a directory (not a symbolic link) owned by this
// process's user; group or other permission bits on it are removed.
// Anything else is an error, so a key or socket is never put where another
// user could read or swap it.
func EnsurePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, PrivateDirMode); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symbolic link, not a private directory", dir)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to this process's uid %d", dir, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, PrivateDirMode); err != nil {
			return fmt.Errorf("%s: cannot make it private: %w", dir, err)
		}
	}
	return nil
}

// WriteFileAtomic replaces path so that a reader sees the old or the new
// content, never a torn file: a temp file in the same directory with its
// mode set before any byte is written, fsync, rename, fsync of the directory.
// The temp name starts with '.', which file watchers here ignore.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Save writes the CA into dir (made private with EnsurePrivateDir):
// ca.crt 0644 and ca.key 0600.
func (ca *CA) Save(dir string) error {
	if err := EnsurePrivateDir(dir); err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, CAKeyFile), keyPEM, KeyFileMode); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, CACertFile), ca.CertPEM, CertFileMode)
}

// maxPEMFile bounds a CA certificate or key file: regular files only, never
// blocking (a FIFO in the state directory must not hang start-up).
const maxPEMFile = 1 << 20

// LoadCA reads a CA saved by Save. The key file must not be readable by
// group or others, and the certificate must be a CA that matches the key.
func LoadCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	st, err := os.Stat(keyPath)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: a CA key must be readable by its owner only (chmod 600)", keyPath, st.Mode().Perm())
	}
	certPEM, err := inputfile.Read(certPath, maxPEMFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := inputfile.Read(keyPath, maxPEMFile)
	if err != nil {
		return nil, err
	}
	cert, key, err := ParseKeyPairPEM(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA in %s: %w", dir, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	return &CA{Cert: cert, Key: key, CertPEM: EncodeCertPEM(cert.Raw)}, nil
}

// LoadOrCreateCA loads the CA kept in dir, or makes one with o and keeps it
// there. Creation is atomic: the files are written into a private temp
// directory that is renamed to dir, so two processes starting at once end
// up with the same CA and nobody ever reads half a CA.
func LoadOrCreateCA(dir string, o CAOptions) (ca *CA, created bool, err error) {
	ca, err = LoadCA(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return ca, false, err
	}
	if _, serr := os.Stat(dir); serr == nil {
		// The directory is there but not the CA: not ours to overwrite.
		return nil, false, fmt.Errorf("%s exists without a complete CA: %w", dir, err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, PrivateDirMode); err != nil {
		return nil, false, err
	}
	ca, err = NewCA(o)
	if err != nil {
		return nil, false, err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return nil, false, err
	}
	defer os.RemoveAll(tmp)
	if err := ca.Save(tmp); err != nil {
		return nil, false, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another process won the race: use its CA.
		if other, lerr := LoadCA(dir); lerr == nil {
			return other, false, nil
		}
		return nil, false, err
	}
	return ca, true, nil
}
