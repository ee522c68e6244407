package agent

import (
	"context"
	"net"
	"strconv"

	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/ingress"
)

// IngressConfig configures the node's built-in Ingress controller
// (internal/ingress): it serves the Ingresses of class skiff on
// HTTPPort and HTTPSPort of every node address.
type IngressConfig struct {
	// Disable turns the ingress off on this node (the status writer
	// too; the other nodes keep serving and listing their addresses).
	Disable bool
	// HTTPPort and HTTPSPort default to 80 and 443.
	HTTPPort, HTTPSPort int
	// BindAddress is the address listened on (default: all).
	BindAddress string
}

// startIngress runs the ingress until ctx ends. A port already taken is
// logged and retried (internal/ingress), never fatal: the node's pods
// matter more than its ingress.
func (a *Agent) startIngress(ctx context.Context, client kubernetes.Interface) {
	ic := a.cfg.Ingress
	if ic.Disable {
		a.log.Info("ingress disabled on this node")
		return
	}
	if ic.HTTPPort == 0 {
		ic.HTTPPort = 80
	}
	if ic.HTTPSPort == 0 {
		ic.HTTPSPort = 443
	}
	c, err := ingress.New(ingress.Config{
		HTTPAddr:  net.JoinHostPort(ic.BindAddress, strconv.Itoa(ic.HTTPPort)),
		HTTPSAddr: net.JoinHostPort(ic.BindAddress, strconv.Itoa(ic.HTTPSPort)),
		NodeName:  a.cfg.NodeName,
	}, ingress.Deps{Client: client, Logger: a.log})
	if err != nil {
		a.log.Error("ingress is off", "err", err)
		return
	}
	go func() {
		if err := c.Run(ctx); err != nil {
			a.log.Error("ingress stopped", "err", err)
		}
	}()
}
