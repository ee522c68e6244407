package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// FirstServiceIP is the ClusterIP of the default/kubernetes Service in the
// default service CIDR 10.43.0.0/16; in-cluster clients dial it, so the
// serving certificate must name it.
var FirstServiceIP = net.IPv4(10, 43, 0, 1)

// ServingSANs returns the subject alternative names the API server's serving
// certificate carries: loopback names and addresses, the hostname, every
// non-loopback address of this host, the in-cluster names of the kubernetes
// Service and its ClusterIP, plus extra (each an IP or a DNS name).
// The result is sorted and free of duplicates so it can be compared.
func ServingSANs(extra []string) (dnsNames []string, ips []net.IP) {
	dnsNames = []string{
		"localhost",
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local",
	}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, FirstServiceIP}
	if h, err := os.Hostname(); err == nil && h != "" {
		dnsNames = append(dnsNames, strings.ToLower(h))
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			ips = append(ips, ipn.IP)
		}
	}
	for _, e := range extra {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if ip := net.ParseIP(e); ip != nil {
			ips = append(ips, ip)
		} else {
			dnsNames = append(dnsNames, strings.ToLower(e))
		}
	}
	return normalizeSANs(dnsNames, ips)
}

func normalizeSANs(dnsNames []string, ips []net.IP) ([]string, []net.IP) {
	dns := slices.Clone(dnsNames)
	slices.Sort(dns)
	dns = slices.Compact(dns)
	norm := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		norm = append(norm, ip)
	}
	slices.SortFunc(norm, func(a, b net.IP) int { return strings.Compare(string(a), string(b)) })
	norm = slices.CompactFunc(norm, func(a, b net.IP) bool { return a.Equal(b) })
	return dns, norm
}

func sameSANs(cert *x509.Certificate, dnsNames []string, ips []net.IP) bool {
	wantDNS, wantIPs := normalizeSANs(dnsNames, ips)
	haveDNS, haveIPs := normalizeSANs(cert.DNSNames, cert.IPAddresses)
	return slices.Equal(wantDNS, haveDNS) && slices.EqualFunc(wantIPs, haveIPs, net.IP.Equal)
}

// LeafFiles names a certificate/key pair on disk.
type LeafFiles struct {
	CertPath, KeyPath string
}

// ServingFiles returns the paths of the serving certificate in dir.
func ServingFiles(dir string) LeafFiles {
	return LeafFiles{filepath.Join(dir, ServingCertFile), filepath.Join(dir, ServingKeyFile)}
}

// ClientFiles returns the paths of the client certificate called name in dir.
func ClientFiles(dir, name string) LeafFiles {
	return LeafFiles{filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")}
}

// LoadOrIssueServing returns the serving certificate in dir, re-issuing it
// when it is missing, not from ca, near expiry, or names different SANs.
func (ca *CA) LoadOrIssueServing(dir string, dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	files := ServingFiles(dir)
	reuse := func(cert *x509.Certificate) bool {
		return ca.verifyLeaf(cert, x509.ExtKeyUsageServerAuth) == nil && sameSANs(cert, dnsNames, ips)
	}
	return ca.loadOrIssue(files, reuse, func() ([]byte, []byte, error) {
		return ca.IssueServing(dnsNames, ips, validity)
	})
}

// LoadOrIssueClient returns the client certificate called name in dir (for
// example AdminClientName), re-issuing it when it is missing, not from ca,
// near expiry, or carries a different user or groups.
func (ca *CA) LoadOrIssueClient(dir, name, user string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	files := ClientFiles(dir, name)
	reuse := func(cert *x509.Certificate) bool {
		return ca.verifyLeaf(cert, x509.ExtKeyUsageClientAuth) == nil &&
			cert.Subject.CommonName == user &&
			sameSet(cert.Subject.Organization, groups)
	}
	return ca.loadOrIssue(files, reuse, func() ([]byte, []byte, error) {
		return ca.IssueClient(user, groups, validity)
	})
}

func (ca *CA) loadOrIssue(files LeafFiles, reuse func(*x509.Certificate) bool, issue func() ([]byte, []byte, error)) (certPEM, keyPEM []byte, err error) {
	certPEM, err = readIfExists(files.CertPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = readIfExists(files.KeyPath)
	if err != nil {
		return nil, nil, err
	}
	if certPEM != nil && keyPEM != nil {
		// A pair that does not load (corrupt, mismatched) is simply replaced:
		// unlike the CA, a leaf can be re-issued without breaking anyone.
		if pair, err := tls.X509KeyPair(certPEM, keyPEM); err == nil {
			leaf := pair.Leaf
			if leaf == nil { // GODEBUG=x509keypairleaf=0
				leaf, _ = x509.ParseCertificate(pair.Certificate[0])
			}
			if leaf != nil && reuse(leaf) && ca.fresh(leaf) {
				return certPEM, keyPEM, nil
			}
		}
	}
	certPEM, keyPEM, err = issue()
	if err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(files.KeyPath, keyPEM, keyPerm); err != nil {
		return nil, nil, fmt.Errorf("saving key: %w", err)
	}
	if err := writeFileAtomic(files.CertPath, certPEM, certPerm); err != nil {
		return nil, nil, fmt.Errorf("saving certificate: %w", err)
	}
	return certPEM, keyPEM, nil
}

// sameSet compares string sets: DER encodes a certificate's organizations as
// a SET, which reorders them, so order cannot be part of the comparison.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
