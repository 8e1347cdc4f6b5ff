package chart

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// kubectlCmd finds kubectl: $KUBECTL, then PATH (`source e2e/cluster/env` puts the
// cluster's own build there).
func kubectlCmd(t testing.TB) string {
	t.Helper()
	if k := os.Getenv("KUBECTL"); k != "" {
		return k
	}
	k, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl: set $KUBECTL or `source e2e/cluster/env`")
	}
	return k
}

// needCluster skips the test unless $KUBECONFIG points at an API server that answers.
func needCluster(t testing.TB) string {
	t.Helper()
	if os.Getenv("KUBECONFIG") == "" {
		t.Skip("no cluster: start one with e2e/cluster/up and `source e2e/cluster/env`")
	}
	k := kubectlCmd(t)
	if _, err := run(t, "", k, "get", "--raw=/readyz", "--request-timeout=5s"); err != nil {
		t.Skipf("the cluster in $KUBECONFIG does not answer: %v", err)
	}
	return k
}

// The API server is the most faithful validator: every rendered object (CRDs, hooks and
// RBAC included) is sent to it with --dry-run=server, so defaulting, validation, admission
// and strict field validation all run, and nothing is stored.
func TestAPIServerAcceptsRenderedChart(t *testing.T) {
	k := needCluster(t)
	for name, sets := range variants {
		t.Run(name, func(t *testing.T) {
			manifests := template(t, append(sets, "metrics.serviceMonitor.enabled=false")...)
			out, err := run(t, manifests, k, "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			t.Logf("accepted:\n%s", out)
		})
	}
}

// `helm install --dry-run=server` validates against the cluster's OpenAPI schema as a
// real install does, and renders NOTES.txt.
func TestHelmInstallDryRun(t *testing.T) {
	needCluster(t)
	out, err := runHelm(t, "install", "ferry-dry-run", chartDir, "--namespace", "kube-system",
		"--dry-run=server", "--set", "k8sServiceHost=192.168.230.1")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(out, "NOTES:")
	if i < 0 {
		t.Fatalf("no NOTES in\n%s", out)
	}
	notes := out[i:]
	for _, want := range []string{"rollout status daemonset/ferry-dry-run-proxy", "helm uninstall ferry-dry-run"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "WARNING") {
		t.Errorf("NOTES warn although k8sServiceHost is set:\n%s", notes)
	}
}
