// Package certificates holds the registry descriptor for
// certificates.k8s.io/v1 certificatesigningrequests (cluster-scoped).
//
// Contract: Resources returns the descriptor. As upstream's strategy does,
// the spec is immutable after create (main-resource updates keep the old
// spec and status), status writes keep the spec and the approval
// conditions, and approval writes (PrepareForApprovalUpdate, for the API
// server's "approval" subresource handler) keep everything but the
// Approved/Denied conditions. Requestor identity (spec.username, groups,
// uid, extra) is filled by the API server from the authenticated user;
// this package has no request context.
package certificates

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/registry/printing"
)

const minExpirationSeconds = 600

// Resources returns the certificates.k8s.io/v1 resources.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GroupVersion: certificatesv1.SchemeGroupVersion, Resource: "certificatesigningrequests", Singular: "certificatesigningrequest",
		Kind: "CertificateSigningRequest", ListKind: "CertificateSigningRequestList", ShortNames: []string{"csr"},
		New:     func() runtime.Object { return &certificatesv1.CertificateSigningRequest{} },
		NewList: func() runtime.Object { return &certificatesv1.CertificateSigningRequestList{} },
		PrepareForCreate: func(obj runtime.Object) {
			if c, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
				c.Status = certificatesv1.CertificateSigningRequestStatus{}
			}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*certificatesv1.CertificateSigningRequest)
			o, ok2 := old.(*certificatesv1.CertificateSigningRequest)
			if ok1 && ok2 {
				n.Spec, n.Status = *o.Spec.DeepCopy(), *o.Status.DeepCopy()
			}
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			n, ok1 := obj.(*certificatesv1.CertificateSigningRequest)
			o, ok2 := old.(*certificatesv1.CertificateSigningRequest)
			if !ok1 || !ok2 {
				return
			}
			n.Spec = *o.Spec.DeepCopy()
			// Approval decisions only change through the approval subresource.
			var conds []certificatesv1.CertificateSigningRequestCondition
			for _, c := range n.Status.Conditions {
				if !isApproval(c.Type) {
					conds = append(conds, c)
				}
			}
			for _, c := range o.Status.Conditions {
				if isApproval(c.Type) {
					conds = append(conds, c)
				}
			}
			n.Status.Conditions = conds
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateSpec(&obj.(*certificatesv1.CertificateSigningRequest).Spec)
		},
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return validateConditions(obj.(*certificatesv1.CertificateSigningRequest).Status.Conditions)
		},
		Subresources: []string{"status", "approval"},
		TableColumns: []metav1.TableColumnDefinition{
			printing.NameColumn(),
			printing.AgeColumn(),
			printing.Column("SignerName", "string", "Requested signer name for the certificate."),
			printing.Column("Requestor", "string", "Name of the user that requested the certificate."),
			printing.Column("RequestedDuration", "string", "Duration of the certificate requested."),
			printing.Column("Condition", "string", "State of the certificate signing request."),
		},
		TableRow: func(obj runtime.Object) []interface{} {
			c := obj.(*certificatesv1.CertificateSigningRequest)
			requested := "<none>"
			if c.Spec.ExpirationSeconds != nil {
				requested = duration.HumanDuration(time.Duration(*c.Spec.ExpirationSeconds) * time.Second)
			}
			return []interface{}{c.Name, printing.Age(c.CreationTimestamp), c.Spec.SignerName, c.Spec.Username, requested, condition(c)}
		},
	}}
}

// PrepareForApprovalUpdate implements the approval subresource: only the
// Approved and Denied conditions may change; everything else comes from old.
func PrepareForApprovalUpdate(obj, old *certificatesv1.CertificateSigningRequest) {
	var conds []certificatesv1.CertificateSigningRequestCondition
	for _, c := range old.Status.Conditions {
		if !isApproval(c.Type) {
			conds = append(conds, c)
		}
	}
	for _, c := range obj.Status.Conditions {
		if isApproval(c.Type) {
			conds = append(conds, c)
		}
	}
	obj.Spec = *old.Spec.DeepCopy()
	obj.Status = *old.Status.DeepCopy()
	obj.Status.Conditions = conds
}

// ValidateApprovalUpdate checks an approval write: a request cannot be both
// approved and denied, and decisions cannot be withdrawn.
func ValidateApprovalUpdate(obj, old *certificatesv1.CertificateSigningRequest) field.ErrorList {
	errs := validateConditions(obj.Status.Conditions)
	p := field.NewPath("status", "conditions")
	for _, oc := range old.Status.Conditions {
		if !isApproval(oc.Type) {
			continue
		}
		found := false
		for _, nc := range obj.Status.Conditions {
			found = found || (nc.Type == oc.Type && nc.Status == oc.Status)
		}
		if !found {
			errs = append(errs, field.Forbidden(p, fmt.Sprintf("updates may not remove a condition of type %q", oc.Type)))
		}
	}
	return errs
}

func isApproval(t certificatesv1.RequestConditionType) bool {
	return t == certificatesv1.CertificateApproved || t == certificatesv1.CertificateDenied
}

func validateConditions(conds []certificatesv1.CertificateSigningRequestCondition) field.ErrorList {
	p := field.NewPath("status", "conditions")
	var errs field.ErrorList
	seen := map[certificatesv1.RequestConditionType]bool{}
	for i, c := range conds {
		cp := p.Index(i)
		if c.Type == "" {
			errs = append(errs, field.Required(cp.Child("type"), ""))
		}
		if seen[c.Type] {
			errs = append(errs, field.Duplicate(cp.Child("type"), c.Type))
		}
		seen[c.Type] = true
		switch c.Status {
		case corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown:
		case "":
			errs = append(errs, field.Required(cp.Child("status"), ""))
		default:
			errs = append(errs, field.NotSupported(cp.Child("status"), c.Status, []string{"True", "False", "Unknown"}))
		}
	}
	if hasTrue(conds, certificatesv1.CertificateApproved) && hasTrue(conds, certificatesv1.CertificateDenied) {
		errs = append(errs, field.Invalid(p, certificatesv1.CertificateDenied, "Approved and Denied conditions are mutually exclusive"))
	}
	return errs
}

func hasTrue(conds []certificatesv1.CertificateSigningRequestCondition, t certificatesv1.RequestConditionType) bool {
	for _, c := range conds {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func validateSpec(s *certificatesv1.CertificateSigningRequestSpec) field.ErrorList {
	p := field.NewPath("spec")
	var errs field.ErrorList
	block, _ := pem.Decode(s.Request)
	switch {
	case len(s.Request) == 0:
		errs = append(errs, field.Required(p.Child("request"), ""))
	case block == nil || block.Type != "CERTIFICATE REQUEST":
		errs = append(errs, field.Invalid(p.Child("request"), "", "PEM block type must be CERTIFICATE REQUEST"))
	default:
		if _, err := x509.ParseCertificateRequest(block.Bytes); err != nil {
			errs = append(errs, field.Invalid(p.Child("request"), "", err.Error()))
		}
	}
	sp := p.Child("signerName")
	if s.SignerName == "" {
		errs = append(errs, field.Required(sp, ""))
	} else {
		domain, path, ok := strings.Cut(s.SignerName, "/")
		if !ok || path == "" {
			errs = append(errs, field.Invalid(sp, s.SignerName, "must be a fully qualified domain and path of the form 'example.com/signer-name'"))
		} else {
			errs = append(errs, validation.IsFullyQualifiedDomainName(sp, domain)...)
		}
	}
	if s.ExpirationSeconds != nil && *s.ExpirationSeconds < minExpirationSeconds {
		errs = append(errs, field.Invalid(p.Child("expirationSeconds"), *s.ExpirationSeconds, "may not specify a duration less than 600 seconds (10 minutes)"))
	}
	up := p.Child("usages")
	if len(s.Usages) == 0 {
		errs = append(errs, field.Required(up, ""))
	}
	seen := map[certificatesv1.KeyUsage]bool{}
	for i, u := range s.Usages {
		if seen[u] {
			errs = append(errs, field.Duplicate(up.Index(i), u))
		}
		seen[u] = true
	}
	return errs
}

// condition renders the CONDITION column: Approved/Denied/Pending, then
// ",Failed" and ",Issued" when they apply.
func condition(c *certificatesv1.CertificateSigningRequest) string {
	var approved, denied, failed bool
	for _, cond := range c.Status.Conditions {
		switch cond.Type {
		case certificatesv1.CertificateApproved:
			approved = true
		case certificatesv1.CertificateDenied:
			denied = true
		case certificatesv1.CertificateFailed:
			failed = true
		}
	}
	s := "Pending"
	if denied {
		s = "Denied"
	} else if approved {
		s = "Approved"
	}
	if failed {
		s += ",Failed"
	}
	if len(c.Status.Certificate) > 0 {
		s += ",Issued"
	}
	return s
}
