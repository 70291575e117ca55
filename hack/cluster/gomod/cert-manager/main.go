// The cert-manager controller of kfn's local cluster: the CA and SelfSigned issuers and the
// controllers that turn a Certificate into a Secret, taken from cert-manager's own packages.
//
// cert-manager's controller binary is a module the Go module proxy does not serve, so kfn runs
// the library's controllers from this small main instead. It has no webhook (the CRDs need no
// conversion, and nothing here relies on admission validation), no ACME, Vault or Venafi
// issuers, no cainjector and no Gateway shim: kfn creates the Gateway's Certificates itself.
//
// It does run the ingress-shim, which makes a Certificate for each TLS Secret of an Ingress
// annotated with cert-manager.io/issuer or cert-manager.io/cluster-issuer: that is how an
// admin gets the certificate of kfn's `exposure.mode: ingress` (the chart's
// exposure.ingress.annotations), and the local cluster tests that path with Contour. Only
// those explicit annotations count (no automatic-certificate annotation, no default issuer).
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// Each controller registers itself with controller.Register when imported.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuer types the (Cluster)Issuer controllers check; without them every request
	// fails with "issuer 'ca' not registered".
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (the pod's own credentials when empty)")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager",
		"where the Secrets that ClusterIssuers refer to live")
	workers := flag.Int("workers", 2, "workers per controller")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := logf.FromContext(ctx)

	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         *kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: *clusterResourceNamespace},
	})
	if err != nil {
		log.Error(err, "building the controller context")
		os.Exit(1)
	}
	base, err := factory.Build()
	if err != nil {
		log.Error(err, "building the controller context")
		os.Exit(1)
	}
	g, gctx := errgroup.WithContext(ctx)
	for name, construct := range controller.Known() {
		c, err := construct(factory)
		if err != nil {
			log.Error(err, "constructing a controller", "name", name)
			os.Exit(1)
		}
		log.Info("starting controller", "name", name)
		g.Go(func() error { return c.Run(*workers, gctx) })
	}
	// The informers start after every controller has asked for its own.
	base.SharedInformerFactory.Start(gctx.Done())
	base.KubeSharedInformerFactory.Start(gctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(gctx.Done())
	if err := g.Wait(); err != nil {
		log.Error(err, "a controller stopped")
		os.Exit(1)
	}
}
