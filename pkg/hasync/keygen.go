package hasync

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// keyValidity is how long GenerateKeys' certificates are valid.
const keyValidity = 10 * 365 * 24 * time.Hour

// GenerateKeys writes a sync CA and a certificate for each node into dir
// (made 0700 if missing): ca.crt and ca.key, then <node>.crt and
// <node>.key for each node, ECDSA P-256, common name and DNS SAN the
// node's name, valid for 10 years, usable as server and client; keys are
// mode 0600. An existing ca.crt and ca.key are used instead of making a
// new CA, so that a node can be added later; an existing node file is an
// error (nothing is overwritten). Copy ca.crt and a node's own pair to
// that node; ca.key stays with whoever adds nodes.
func GenerateKeys(dir string, nodes []string) error {
	if len(nodes) == 0 {
		return errors.New("hasync: no node names")
	}
	seen := map[string]bool{}
	for _, name := range nodes {
		if err := checkNodeName(name); err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("hasync: node %q named twice", name)
		}
		seen[name] = true
		for _, ext := range []string{".crt", ".key"} {
			if _, err := os.Lstat(filepath.Join(dir, name+ext)); err == nil {
				return fmt.Errorf("hasync: %s already exists", filepath.Join(dir, name+ext))
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("hasync: %w", err)
	}
	ca, caKey, err := loadOrMakeCA(dir)
	if err != nil {
		return err
	}
	for _, name := range nodes {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		now := time.Now()
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: name},
			DNSNames:     []string{name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(keyValidity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("hasync: node %s: %w", name, err)
		}
		if err := writeKey(filepath.Join(dir, name+".key"), key); err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkNodeName accepts a DNS name: it is a certificate's DNS SAN and a
// file name in dir.
func checkNodeName(name string) error {
	if name == "" || len(name) > 253 || name == "ca" {
		return fmt.Errorf("hasync: bad node name %q", name)
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			label++
		case c == '-' && label > 0 && i+1 < len(name) && name[i+1] != '.':
			label++
		case c == '.' && label > 0 && i+1 < len(name):
			label = 0
			continue
		default:
			return fmt.Errorf("hasync: bad node name %q (letters, digits, '-' and '.' as in a host name)", name)
		}
		if label > 63 {
			return fmt.Errorf("hasync: bad node name %q (a label longer than 63)", name)
		}
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// loadOrMakeCA returns the CA in dir, making it if there is none.
func loadOrMakeCA(dir string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return parseCA(certPEM, keyPEM)
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("hasync: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("hasync: %w", keyErr)
	default:
		return nil, nil, fmt.Errorf("hasync: %s has only one of ca.crt and ca.key", dir)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "statewall sync CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(keyValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("hasync: ca.crt or ca.key is not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("hasync: ca.crt: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("hasync: ca.crt is not a CA certificate")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("hasync: ca.key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("hasync: ca.key cannot sign")
	}
	return ca, signer, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

// writePEM creates path (which must not exist) with mode perm, whatever
// the umask, and writes one PEM block.
func writePEM(path, typ string, der []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("hasync: %w", err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("hasync: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("hasync: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("hasync: %s: %w", path, err)
	}
	return nil
}
