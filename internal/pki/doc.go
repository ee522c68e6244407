// Package pki creates and persists the key material a skiff cluster needs:
// the cluster CA, the API server's serving certificate, client certificates,
// the service-account token signing key and the agent join token.
//
// Everything lives in one directory, <data-dir>/tls (see TLSDir), except the
// join token, which is <data-dir>/token as in k3s:
//
//	ca.crt, ca.key                  cluster CA (ECDSA P-256, 10 years)
//	serving.crt, serving.key        API server serving certificate
//	<name>.crt, <name>.key          client certificates (e.g. client-admin)
//	service-account.key             ES256 service-account signing key
//
// Contract:
//   - Every LoadOrCreate/LoadOrIssue function is idempotent: when valid files
//     exist they are reused unchanged, so restarts keep the same CA and keys.
//     Leaf certificates are re-issued when they are not signed by the current
//     CA, when their subject or SANs differ from what is asked for, or when
//     less than a fifth of their lifetime remains.
//   - Private keys are written with mode 0600 and certificates with 0644,
//     atomically (write to a temporary file, then rename), in a 0700 directory.
//   - All keys are ECDSA P-256: generating a key takes microseconds, so a cold
//     start that creates every file stays far below the 1 s start-up budget
//     (see BenchmarkBootstrap).
//   - Time comes from the injectable CA.Now so expiry logic is testable.
package pki
