package hasync

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(dir, []string{"a", "fw-b.example"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.key", "a.key", "fw-b.example.key"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("ca.crt: IsCA %v, key %v", ca.IsCA, ca.PublicKeyAlgorithm)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range []string{"a", "fw-b.example"} {
		c := readCert(t, filepath.Join(dir, name+".crt"))
		if c.Subject.CommonName != name || len(c.DNSNames) != 1 || c.DNSNames[0] != name {
			t.Errorf("%s: CN %q, DNS SANs %q", name, c.Subject.CommonName, c.DNSNames)
		}
		if v := time.Until(c.NotAfter); v < 9*365*24*time.Hour || v > 11*365*24*time.Hour {
			t.Errorf("%s: valid for %v more, want 10 years", name, v)
		}
		for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
				t.Errorf("%s: does not verify for %v: %v", name, use, err)
			}
		}
		if _, err := LoadTLS(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), filepath.Join(dir, "ca.crt")); err != nil {
			t.Errorf("%s: LoadTLS: %v", name, err)
		}
	}

	// A node added later is signed by the same CA; nothing is overwritten.
	caBefore, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyBefore, _ := os.ReadFile(filepath.Join(dir, "a.key"))
	if err := GenerateKeys(dir, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := readCert(t, filepath.Join(dir, "c.crt")).Verify(x509.VerifyOptions{Roots: roots, DNSName: "c"}); err != nil {
		t.Errorf("c: not signed by the first CA: %v", err)
	}
	if err := GenerateKeys(dir, []string{"a"}); err == nil {
		t.Error("a generated twice")
	}
	caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyAfter, _ := os.ReadFile(filepath.Join(dir, "a.key"))
	if !bytes.Equal(caBefore, caAfter) || !bytes.Equal(keyBefore, keyAfter) {
		t.Error("ca.crt or a.key overwritten")
	}
}

func TestGenerateKeysRefusesBadNames(t *testing.T) {
	for _, name := range []string{"", "ca", "../x", "a/b", ".a", "a.", "a..b", "-a", "a-", "a b", "ä"} {
		if err := GenerateKeys(t.TempDir(), []string{name}); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
	if err := GenerateKeys(t.TempDir(), []string{"a", "a"}); err == nil {
		t.Error("a name twice accepted")
	}
	if err := GenerateKeys(t.TempDir(), nil); err == nil {
		t.Error("no names accepted")
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
