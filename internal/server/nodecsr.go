package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"skiff.dev/skiff/internal/pki"
)

// Node join: an agent holding the join token (user system:node-join,
// group system:bootstrappers) creates a CertificateSigningRequest for
// system:node:NAME with signerName kubernetes.io/kube-apiserver-client-kubelet;
// nodeCSRSigner approves it (as upstream's csrapproving controller does
// for the bootstrap group) and signs it with the cluster CA (as the
// csrsigning controller does). A node renewing its own certificate is
// approved too. Anything else under that signer stays pending for an
// administrator; other signers are not ours.

// BootstrapGroup is the group of the join token's user.
const BootstrapGroup = "system:bootstrappers"

// csrVerdict is what the signer does with one CSR.
type csrVerdict int

const (
	csrIgnore  csrVerdict = iota // not ours, or already finished
	csrApprove                   // approve (then sign)
	csrSign                      // approved: sign
	csrFail                      // approved but unsignable: mark Failed
)

// decideNodeCSR is the signer's pure core.
func decideNodeCSR(csr *certificatesv1.CertificateSigningRequest) (csrVerdict, string) {
	if csr.Spec.SignerName != pki.KubeletClientSigner || len(csr.Status.Certificate) > 0 {
		return csrIgnore, ""
	}
	approved := false
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return csrIgnore, ""
		case certificatesv1.CertificateApproved:
			approved = c.Status == corev1.ConditionTrue
		}
	}
	_, node, err := pki.ParseNodeCSR(csr.Spec.Request)
	if err == nil {
		err = checkKubeletClientUsages(csr.Spec.Usages)
	}
	if approved {
		if err != nil {
			return csrFail, err.Error()
		}
		return csrSign, ""
	}
	if err != nil {
		return csrIgnore, "" // leave it to an administrator
	}
	if slices.Contains(csr.Spec.Groups, BootstrapGroup) {
		return csrApprove, "Auto approving kubelet client certificate after join token authentication."
	}
	if csr.Spec.Username == pki.NodeUserPrefix+node {
		return csrApprove, "Auto approving self kubelet client certificate renewal."
	}
	return csrIgnore, ""
}

// checkKubeletClientUsages allows what upstream's kubelet-client signer
// does: client auth, digital signature and optionally key encipherment.
func checkKubeletClientUsages(us []certificatesv1.KeyUsage) error {
	if !slices.Contains(us, certificatesv1.UsageClientAuth) {
		return fmt.Errorf("usages %v lack %q", us, certificatesv1.UsageClientAuth)
	}
	for _, u := range us {
		switch u {
		case certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return fmt.Errorf("usage %q is not allowed for %s", u, pki.KubeletClientSigner)
		}
	}
	return nil
}

// nodeCSRSigner approves and signs node client certificates.
type nodeCSRSigner struct {
	client kubernetes.Interface
	ca     *pki.CA
	// validity is the lifetime of the certificates it signs (a CSR may
	// ask for less with spec.expirationSeconds).
	validity time.Duration
	log      *slog.Logger
	lister   func(name string) (*certificatesv1.CertificateSigningRequest, error)
}

// runNodeCSRSigner serves node joins until ctx ends.
func (s *Server) runNodeCSRSigner(ctx context.Context) {
	client, err := kubernetes.NewForConfig(s.LoopbackConfig())
	if err != nil {
		s.log.Error("node csr signer not started", "err", err)
		return
	}
	validity := s.cfg.NodeCertValidity
	if validity <= 0 {
		validity = pki.NodeClientValidity
	}
	ns := &nodeCSRSigner{client: client, ca: s.pki.CA, validity: validity, log: s.log.With("component", "node-csr-signer")}
	ns.run(ctx)
}

func (ns *nodeCSRSigner) run(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(ns.client, 0)
	inf := factory.Certificates().V1().CertificateSigningRequests()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if c, ok := obj.(*certificatesv1.CertificateSigningRequest); ok && c.Spec.SignerName == pki.KubeletClientSigner {
			queue.Add(c.Name)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) },
	}); err != nil {
		ns.log.Error("watching csrs", "err", err)
		return
	}
	lister := inf.Lister()
	ns.lister = func(name string) (*certificatesv1.CertificateSigningRequest, error) { return lister.Get(name) }
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		name, quit := queue.Get()
		if quit {
			return
		}
		if err := ns.sync(ctx, name); err != nil {
			ns.log.Warn("handling csr", "csr", name, "err", err)
			queue.AddRateLimited(name)
		} else {
			queue.Forget(name)
		}
		queue.Done(name)
	}
}

// sync approves and signs one CSR, level-triggered on its current state.
func (ns *nodeCSRSigner) sync(ctx context.Context, name string) error {
	cur, err := ns.lister(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	csr := cur.DeepCopy()
	verdict, msg := decideNodeCSR(csr)
	now := metav1.Now()
	if verdict == csrIgnore {
		return nil
	}
	if verdict == csrApprove {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "AutoApproved", Message: msg,
			LastUpdateTime: now, LastTransitionTime: now,
		})
		out, err := ns.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("approving csr: %w", err)
		}
		// Sign in the same pass rather than wait for the watch to echo
		// the approval: the joining agent is waiting.
		csr = out
		if verdict, msg = decideNodeCSR(csr); verdict == csrIgnore || verdict == csrApprove {
			return nil
		}
	}
	if verdict == csrFail {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SignerValidationFailure", Message: msg,
			LastUpdateTime: now, LastTransitionTime: now,
		})
		if _, err := ns.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("marking csr failed: %w", err)
		}
		return nil
	}
	req, _, err := pki.ParseNodeCSR(csr.Spec.Request)
	if err != nil {
		return err
	}
	validity := ns.validity
	if e := csr.Spec.ExpirationSeconds; e != nil && time.Duration(*e)*time.Second < validity {
		validity = time.Duration(*e) * time.Second
	}
	cert, err := ns.ca.SignClientCSR(req, validity)
	if err != nil {
		return err
	}
	csr.Status.Certificate = cert
	if _, err := ns.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("writing signed certificate: %w", err)
	}
	ns.log.Info("signed node client certificate", "csr", name, "subject", req.Subject.CommonName)
	return nil
}
