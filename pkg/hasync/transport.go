package hasync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Transport: TCP and crypto/tls 1.3, both ends authenticated by
// certificates signed by one CA (the sync CA: give it no other use, since
// any certificate it signed is a peer unless AllowedPeers says which).
//
//   - The accepting side requires a client certificate and verifies it
//     against the CA (tls.RequireAndVerifyClientCert, ClientCAs).
//   - The dialing side verifies the server's chain against the same CA
//     itself, in VerifyConnection, with x509.Verify: peers are configured
//     by address ("198.18.0.2:7946") while certificates name nodes ("b"),
//     so the standard host-name check (ServerName) would need IP SANs in
//     every certificate or a second name per peer. Trust is "signed by the
//     sync CA" plus, when set, AllowedPeers.
//   - AllowedPeers, if set, is checked on both sides inside the handshake:
//     the peer's common name or one of its DNS SANs must be listed.
//   - No session tickets, no resumption: a session is a long-lived
//     connection, and every one is authenticated in full.
//
// A peer that fails the handshake (wrong CA, no certificate, plain TCP, a
// name not allowed, too slow) has sent nothing this node reads as sync
// data and receives none: it is counted in Stats.Refused by reason and
// its connection closed.

// LoadTLS reads a node's certificate and private key and the CA
// certificate that signed every peer's (PEM files; GenerateKeys writes
// them) into the TLS configuration Config.TLS takes: the node's
// certificate, and the CA as both RootCAs and ClientCAs. New derives the
// server and client sides from it.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("hasync: node certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("hasync: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("hasync: CA: no PEM certificate in %s", caFile)
	}
	if block, _ := pem.Decode(caPEM); block != nil {
		if ca, err := x509.ParseCertificate(block.Bytes); err == nil && !ca.IsCA {
			return nil, fmt.Errorf("hasync: CA: %s is not a CA certificate", caFile)
		}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// errNotAllowed is what VerifyConnection returns for a peer whose
// certificate is valid but not in AllowedPeers.
var errNotAllowed = errors.New("peer certificate not in AllowedPeers")

// makeTLS derives the accepting and dialing configurations from base.
func makeTLS(base *tls.Config, allowed map[string]bool) (server, client *tls.Config, err error) {
	if base == nil {
		return nil, nil, errors.New("hasync: no TLS configuration (Config.TLS or CertFile, KeyFile, CAFile)")
	}
	if len(base.Certificates) == 0 && base.GetCertificate == nil {
		return nil, nil, errors.New("hasync: TLS configuration without a certificate")
	}
	roots, clientCAs := base.RootCAs, base.ClientCAs
	if roots == nil {
		roots = clientCAs
	}
	if clientCAs == nil {
		clientCAs = roots
	}
	if roots == nil {
		return nil, nil, errors.New("hasync: TLS configuration without a CA (RootCAs or ClientCAs)")
	}
	checkAllowed := func(cs tls.ConnectionState) error {
		if len(allowed) == 0 {
			return nil
		}
		if len(cs.PeerCertificates) == 0 || !nameAllowed(cs.PeerCertificates[0], allowed) {
			return errNotAllowed
		}
		return nil
	}

	server = base.Clone()
	server.MinVersion = tls.VersionTLS13
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.ClientCAs = clientCAs
	server.SessionTicketsDisabled = true
	server.VerifyConnection = checkAllowed

	client = base.Clone()
	client.MinVersion = tls.VersionTLS13
	client.SessionTicketsDisabled = true
	client.ClientSessionCache = nil
	// The chain is verified below, against the CA, without a host name
	// (see the comment at the top of this file): crypto/tls's documented
	// way to replace its own verification.
	client.InsecureSkipVerify = true
	client.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("server sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return err
		}
		return checkAllowed(cs)
	}
	return server, client, nil
}

// certName is a certificate's node name: its common name, or its first
// DNS SAN when it has none.
func certName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}

func nameAllowed(c *x509.Certificate, allowed map[string]bool) bool {
	if allowed[strings.ToLower(c.Subject.CommonName)] {
		return true
	}
	for _, n := range c.DNSNames {
		if allowed[strings.ToLower(n)] {
			return true
		}
	}
	return false
}

// handshake runs the TLS handshake on tc (over raw) within
// handshakeTimeout and returns the peer's certificate name. A failure is
// classified: errNotAllowed, or anything else (handshake).
func (n *Node) handshake(ctx context.Context, raw net.Conn, tc *tls.Conn) (string, Reason, error) {
	_ = raw.SetDeadline(time.Now().Add(n.handshakeTimeout))
	err := tc.HandshakeContext(ctx)
	_ = raw.SetDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, errNotAllowed) {
			return "", ReasonNotAllowed, err
		}
		return "", ReasonHandshake, err
	}
	cs := tc.ConnectionState()
	if cs.Version != tls.VersionTLS13 || len(cs.PeerCertificates) == 0 {
		// Neither can happen with the configurations makeTLS makes.
		return "", ReasonHandshake, errors.New("not a TLS 1.3 session with a peer certificate")
	}
	return certName(cs.PeerCertificates[0]), 0, nil
}
