package install

// No IP plan: the metrics servers listen on 127.0.0.1, on ports the
// kernel picks.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/nftpolicy/nftpolicy/controllers"
	"github.com/nftpolicy/nftpolicy/explain"
	"github.com/nftpolicy/nftpolicy/nft"
	"github.com/nftpolicy/nftpolicy/nft/nfttest"
)

const metricsReaderRole = "nftpolicy-metrics-reader"

// TestRBAC_MetricsPortNeedsAnAuthorizedUser runs the agent's metrics
// server (controllers.MetricsServerOptions with /metrics and the applied
// ruleset at controllers.RulesetPath, as cmd/nftpolicy configures it)
// under the install's ServiceAccount and RBAC against a real
// kube-apiserver, and reads both paths as real users: ServiceAccount
// tokens (TokenRequest) and client certificates of the API server's
// client CA, the latter through explain.AgentHTTPClient as nftpolicy
// explain --live does. No credentials, a token or certificate the API
// server does not vouch for: 401. A known user not allowed to get the
// path: 403. A user bound to nftpolicy-metrics-reader: 200 and the
// content. Plain HTTP gets nothing. An agent identity without the
// nftpolicy-metrics-auth binding cannot check tokens, and one without the
// client-CA RoleBinding cannot check certificates: the RBAC of config/rbac
// is what makes the authorized cases work.
func TestRBAC_MetricsPortNeedsAnAuthorizedUser(t *testing.T) {
	cfg, c := apiServer(t)
	ctx := context.Background()
	objs := installObjects(t)
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding"} {
		for _, o := range objs {
			if o.GetKind() == kind {
				if _, err := apply(ctx, c, o); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The API server publishes its client CA shortly after it starts, and
	// RBAC sees a new binding shortly after it is stored: wait for both,
	// so that the agent's first read of the CA is neither "not found" nor
	// "forbidden" (its informer would then retry with a growing backoff).
	waitFor(t, waitTimeout, "the client CA in "+controllers.ClientCANamespace+"/"+controllers.ClientCAConfigMap+", readable by the agent", func() string {
		cm, err := cs.CoreV1().ConfigMaps(controllers.ClientCANamespace).Get(ctx, controllers.ClientCAConfigMap, metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if cm.Data[controllers.ClientCAKey] == "" {
			return "no " + controllers.ClientCAKey
		}
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + systemNamespace + ":" + agentName,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: controllers.ClientCANamespace, Verb: "watch",
				Resource: "configmaps", Name: controllers.ClientCAConfigMap},
		}}, metav1.CreateOptions{})
		if err != nil {
			return err.Error()
		}
		if !sar.Status.Allowed {
			return "the agent may not watch it yet: " + sar.Status.Reason
		}
		return ""
	})
	// A scraper bound to the reader role, and a ServiceAccount that is not.
	scraper := serviceAccountToken(t, c, cs, "metrics-scraper", metricsReaderRole)
	stranger := serviceAccountToken(t, c, cs, "metrics-stranger", "")
	// The agent's identity without nftpolicy-metrics-auth and the
	// client-CA RoleBinding: only the agent's own ClusterRole.
	serviceAccountToken(t, c, cs, "agent-without-metrics-auth", agentName)
	// Users with client certificates, as in a kubeconfig: one bound to
	// the reader role, one not.
	mustCreate(t, c, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "explain-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "explain-user"}},
	})
	certReader := agentClient(t, apiEnv.User(t, "explain-user"))
	certStranger := agentClient(t, apiEnv.User(t, "cert-stranger"))
	unknownCA := agentClient(t, selfSignedUser(t, "explain-user"))
	// explain refuses to hand a token to an unverified agent unless told.
	if _, err := explain.AgentHTTPClient(&rest.Config{BearerToken: scraper}, explain.AgentTLS{}); err == nil {
		t.Error("explain.AgentHTTPClient with a token and neither a CA nor InsecureSkipVerify: no error")
	}
	tokenScraper := agentClient(t, &rest.Config{BearerToken: scraper})
	tokenStranger := agentClient(t, &rest.Config{BearerToken: stranger})
	bogusToken := agentClient(t, &rest.Config{BearerToken: "not-a-token"})
	anonymous := agentClient(t, &rest.Config{})

	base := startMetricsServer(t, cfg, agentName)
	// Each path with what the authorized answer carries.
	paths := map[string]string{"/metrics": "# TYPE ", controllers.RulesetPath: `"node":"install-metrics"`}
	tests := []struct {
		name string
		hc   *http.Client
		want int
	}{
		{"no credentials", anonymous, http.StatusUnauthorized},
		{"a token the API server does not know", bogusToken, http.StatusUnauthorized},
		{"a client certificate of another CA", unknownCA, http.StatusUnauthorized},
		{"a ServiceAccount token, not allowed", tokenStranger, http.StatusForbidden},
		{"a client certificate, not allowed", certStranger, http.StatusForbidden},
		{"a ServiceAccount token bound to " + metricsReaderRole, tokenScraper, http.StatusOK},
		{"a client certificate bound to " + metricsReaderRole, certReader, http.StatusOK},
	}
	for _, tt := range tests {
		for path, content := range paths {
			t.Run(tt.name+path, func(t *testing.T) {
				code, body := get(t, tt.hc, base+path)
				if code != tt.want {
					t.Fatalf("GET %s: %d %.200q, want %d", base+path, code, body, tt.want)
				}
				if (code == http.StatusOK) != strings.Contains(body, content) {
					t.Errorf("GET %s: %d with %.300q: want %q in the body exactly when 200", base+path, code, body, content)
				}
			})
		}
	}
	t.Run("plain HTTP", func(t *testing.T) {
		for path := range paths {
			resp, err := http.Get(strings.Replace(base, "https://", "http://", 1) + path)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatalf("plain HTTP served %s: %d %.200q", path, resp.StatusCode, body)
				}
			}
		}
	})
	t.Run("agent without nftpolicy-metrics-auth nor the client-CA binding", func(t *testing.T) {
		url := startMetricsServer(t, cfg, "agent-without-metrics-auth") + "/metrics"
		for name, hc := range map[string]*http.Client{"token": tokenScraper, "client certificate": certReader} {
			if code, body := get(t, hc, url); code == http.StatusOK {
				t.Errorf("%s: an agent that may not check its users served the reader: %d %.200q", name, code, body)
			}
		}
	})
}

// agentClient is explain's HTTP client for the agents, as rc's user,
// without verifying the agents' self-signed certificates.
func agentClient(t *testing.T, rc *rest.Config) *http.Client {
	t.Helper()
	hc, err := explain.AgentHTTPClient(rc, explain.AgentTLS{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// selfSignedUser is a config with a client certificate for user that no
// CA the API server knows has signed.
func selfSignedUser(t *testing.T, user string) *rest.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: user},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{TLSClientConfig: rest.TLSClientConfig{
		CertData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyData:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}}
}

// serviceAccountToken creates ServiceAccount name in the install's
// namespace, binds it to clusterRole unless that is empty, and returns a
// token for it.
func serviceAccountToken(t *testing.T, c client.Client, cs kubernetes.Interface, name, clusterRole string) string {
	t.Helper()
	ctx := context.Background()
	mustCreate(t, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: systemNamespace, Name: name}})
	if clusterRole != "" {
		mustCreate(t, c, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: systemNamespace, Name: name}},
		})
	}
	tr, err := cs.CoreV1().ServiceAccounts(systemNamespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", name, err)
	}
	return tr.Status.Token
}

// startMetricsServer serves the agent's metrics port as cmd/nftpolicy
// does, towards the API server as ServiceAccount serviceAccount of the
// install's namespace (impersonated), and returns its base URL once the
// client CA is loaded (or, where serviceAccount may not read it, at once).
func startMetricsServer(t *testing.T, admin *rest.Config, serviceAccount string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + systemNamespace + ":" + serviceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"},
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		t.Fatal(err)
	}
	clientCA, runClientCA, err := controllers.ClientCAFromAPIServer(cs)
	if err != nil {
		t.Fatal(err)
	}
	applied := &controllers.AppliedRuleset{Node: "install-metrics", Inner: nfttest.NewFakeSyncer(), Now: time.Now}
	if err := applied.Sync(context.Background(), &nft.Ruleset{}); err != nil {
		t.Fatal(err)
	}
	srv, err := metricsserver.NewServer(controllers.MetricsServerOptions(addr, true, "",
		map[string]http.Handler{controllers.RulesetPath: applied}, clientCA), cfg, hc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- srv.Start(ctx) }()
	go func() { done <- runClientCA(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("metrics server as %s: %v", serviceAccount, err)
			}
		}
	})
	waitFor(t, waitTimeout, "the metrics server at "+addr, func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return err.Error()
		}
		conn.Close()
		return ""
	})
	if serviceAccount == agentName {
		waitFor(t, waitTimeout, "the client CA from "+controllers.ClientCANamespace+"/"+controllers.ClientCAConfigMap, func() string {
			if len(clientCA.CurrentCABundleContent()) == 0 {
				return "not loaded"
			}
			return ""
		})
	}
	return "https://" + addr
}

// get GETs url with hc and returns the status and body.
func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(fmt.Errorf("read %s: %w", url, err))
	}
	return resp.StatusCode, string(body)
}
