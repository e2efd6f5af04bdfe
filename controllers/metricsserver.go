package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Where the API server publishes the CA that signs its clients'
// certificates (its --client-ca-file): every kube-apiserver writes it
// there for aggregated API servers and the like, and the bootstrap Role
// extension-apiserver-authentication-reader in kube-system reads it.
const (
	ClientCANamespace = "kube-system"
	ClientCAConfigMap = "extension-apiserver-authentication"
	ClientCAKey       = "client-ca-file"
)

// MetricsServerOptions is how the agent serves /metrics and extra (the
// read-only /debug handlers) on bindAddress ("0" disables it).
//
// Secure (the default) is HTTPS, and every request, to /metrics and to
// each extra handler alike, must come from a user the API server
// authenticates and authorizes for that path (a non-resource URL) with
// the request's verb: the agent runs on the host network, so its port is
// open on every node address. Users authenticate with a bearer token
// (checked by a TokenReview) or, when clientCA is not nil, with a client
// certificate it verifies (a kubeconfig's client certificate, which
// nftpolicy explain --live presents). Authorization is a
// SubjectAccessReview. Both answers are cached (a token for a minute, an
// allow for five, a deny for thirty seconds). The agent itself needs
// create on tokenreviews and subjectaccessreviews
// (config/rbac/metrics_auth_role.yaml); readers need ClusterRole
// nftpolicy-metrics-reader. The serving certificate comes from certDir
// (tls.crt, tls.key, reloaded when they change) or, without one, is
// self-signed at start. HTTP/2 is off: its rapid-reset and stream floods
// (CVE-2023-44487, CVE-2023-39325) cost a server more than a scraper
// gains.
//
// Not secure is plain HTTP to anyone, for a loopback address only
// (benchmarks, a local run; v1alpha1.Validate refuses anything else).
func MetricsServerOptions(bindAddress string, secure bool, certDir string, extra map[string]http.Handler,
	clientCA dynamiccertificates.CAContentProvider) metricsserver.Options {
	if !secure {
		return metricsserver.Options{BindAddress: bindAddress, ExtraHandlers: extra}
	}
	return metricsserver.Options{
		BindAddress:   bindAddress,
		SecureServing: true,
		ExtraHandlers: extra,
		FilterProvider: func(rc *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
			return authFilter(rc, hc, clientCA)
		},
		CertDir: certDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.NextProtos = []string{"http/1.1"}
			// Ask for a client certificate, verify none in the handshake:
			// the authenticator verifies it against the API server's
			// client CA (which may change while the server runs) and a
			// client without one can still bring a bearer token.
			c.ClientAuth = tls.RequestClientCert
		}},
	}
}

// ClientCAFromAPIServer returns the CA the API server verifies its
// clients' certificates with, kept up to date from the ConfigMap
// ClientCANamespace/ClientCAConfigMap while run runs (a manager
// Runnable). Until it has read the ConfigMap, or where the agent may not
// read it, no client certificate authenticates; bearer tokens still do.
func ClientCAFromAPIServer(cs kubernetes.Interface) (ca dynamiccertificates.CAContentProvider, run manager.RunnableFunc, err error) {
	c, err := dynamiccertificates.NewDynamicCAFromConfigMapController("metrics-client-ca", ClientCANamespace, ClientCAConfigMap, ClientCAKey, cs)
	if err != nil {
		return nil, nil, fmt.Errorf("client CA of %s/%s: %w", ClientCANamespace, ClientCAConfigMap, err)
	}
	return c, func(ctx context.Context) error {
		c.Run(ctx, 1)
		return nil
	}, nil
}

// authWebhookBackoff is how the TokenReview and SubjectAccessReview calls
// are retried: k8s.io/apiserver's default for authentication webhooks
// (about 5 s in all), so a scrape during an API server restart waits a
// little rather than fail at once.
var authWebhookBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

// authFilter builds the authenticating, authorizing filter of
// MetricsServerOptions.
func authFilter(rc *rest.Config, hc *http.Client, clientCA dynamiccertificates.CAContentProvider) (metricsserver.Filter, error) {
	tokenReviews, err := authenticationv1.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, err
	}
	accessReviews, err := authorizationv1.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, err
	}
	authenticateBackoff := authWebhookBackoff
	authenticator, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                          &apiserver.AnonymousAuthConfig{Enabled: false},
		TokenAccessReviewClient:            tokenReviews,
		TokenAccessReviewTimeout:           10 * time.Second,
		WebhookRetryBackoff:                &authenticateBackoff,
		CacheTTL:                           time.Minute,
		ClientCertificateCAContentProvider: clientCA,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authenticator: %w", err)
	}
	authorizeBackoff := authWebhookBackoff
	authorize, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: accessReviews,
		AllowCacheTTL:             5 * time.Minute,
		DenyCacheTTL:              30 * time.Second,
		WebhookRetryBackoff:       &authorizeBackoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("metrics authorizer: %w", err)
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			res, ok, err := authenticator.AuthenticateRequest(req)
			if err != nil || !ok {
				// An unknown certificate, a token the API server rejects,
				// or no credentials: all the same to the client. The
				// reason (an API server out of reach, say) is logged.
				log.V(1).Info("Unauthenticated request", "remote", req.RemoteAddr, "reason", err)
				http.Error(w, "Unauthorized", http.StatusUnauthorized)
				return
			}
			attrs := authorizer.AttributesRecord{User: res.User, Verb: strings.ToLower(req.Method), Path: req.URL.Path}
			decision, reason, err := authorize.Authorize(req.Context(), attrs)
			if err != nil {
				log.Error(err, "Authorization failed", "user", res.User.GetName(), "path", attrs.Path)
				http.Error(w, "Authorization failed", http.StatusInternalServerError)
				return
			}
			if decision != authorizer.DecisionAllow {
				log.V(1).Info("Forbidden request", "user", res.User.GetName(), "path", attrs.Path, "reason", reason)
				http.Error(w, fmt.Sprintf("user %q may not %s %s", res.User.GetName(), attrs.Verb, attrs.Path), http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, req)
		}), nil
	}, nil
}
