package tests

// Helpers shared by the e2e tests. Address plan of the local cluster
// (e2e/cluster/up):
//
//	API server   https://192.168.230.1:6443 (host bridge ferry0)
//	nodes        nodeN in netns ferry-nodeN at 192.168.230.1N
//	pods         10.244.N.0/24 on nodeN (the host routes each via its node)
//	services     10.96.0.0/12 (the host routes it via node1's service proxy)

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	// WebImage is the test workload built by e2e/cluster/up (e2e/images/web):
	// GET / -> hostname, /healthz, /version -> v1|v2, /burn?ms=N; UDP :5353 echoes the hostname.
	WebImageV1 = "ferry.dev/e2e/web:v1"
	WebImageV2 = "ferry.dev/e2e/web:v2"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("KUBECONFIG") == "" {
		msg := "e2e tests need a cluster: KUBECONFIG is not set.\n" +
			"Start one with `e2e/cluster/up` and run `source e2e/cluster/env` (or export KUBECONFIG=e2e/.work/kubeconfig)."
		if testing.Short() {
			fmt.Fprintln(os.Stderr, "SKIP: "+msg)
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "FAIL: "+msg)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

var (
	cfgOnce   sync.Once
	restCfg   *rest.Config
	clientSet *kubernetes.Clientset
	cfgErr    error
)

// restConfig returns the client configuration from $KUBECONFIG.
func restConfig(t testing.TB) *rest.Config {
	t.Helper()
	cfgOnce.Do(func() {
		restCfg, cfgErr = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		if cfgErr == nil {
			restCfg.QPS, restCfg.Burst = 50, 100
			clientSet, cfgErr = kubernetes.NewForConfig(restCfg)
		}
	})
	if cfgErr != nil {
		t.Fatalf("kubeconfig %s: %v", os.Getenv("KUBECONFIG"), cfgErr)
	}
	return restCfg
}

// client returns a typed clientset for $KUBECONFIG.
func client(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	restConfig(t)
	return clientSet
}

// ctx returns a context cancelled when the test ends.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return c
}

// kubectlPath finds kubectl: $KUBECTL, then the cluster's own build
// (e2e/.work/bin or $FERRY_WORK/bin), then PATH.
func kubectlPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KUBECTL"); p != "" {
		return p
	}
	work := os.Getenv("FERRY_WORK")
	if work == "" {
		_, file, _, _ := runtime.Caller(0)
		work = filepath.Join(filepath.Dir(file), "..", ".work")
	}
	if p := filepath.Join(work, "bin", "kubectl"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl not found: set $KUBECTL or run e2e/cluster/up (which builds e2e/.work/bin/kubectl)")
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// kubectl runs kubectl with args against $KUBECONFIG and returns its stdout;
// the test fails (with stderr) if kubectl exits non-zero.
func kubectl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := kubectlStdin(t, "", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// kubectlStdin runs kubectl with stdin and returns stdout, or an error
// carrying stderr; it does not fail the test.
func kubectlStdin(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, kubectlPath(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// applyYAML applies manifests (kubectl apply -f -, in namespace ns if not
// empty) and fails the test on error. Objects are removed with their
// namespace; use deleteYAML for cluster-scoped ones.
func applyYAML(t testing.TB, ns, manifests string) string {
	t.Helper()
	args := []string{"apply", "-f", "-"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	out, err := kubectlStdin(t, manifests, args...)
	if err != nil {
		t.Fatalf("kubectl apply: %v\n--- manifests ---\n%s", err, manifests)
	}
	return out
}

// deleteYAML deletes manifests, ignoring objects that are already gone.
func deleteYAML(t testing.TB, ns, manifests string) {
	t.Helper()
	args := []string{"delete", "--ignore-not-found", "--wait=false", "-f", "-"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	if _, err := kubectlStdin(t, manifests, args...); err != nil {
		t.Errorf("kubectl delete: %v", err)
	}
}

// namespace creates a fresh namespace for the test, deleted when it ends
// (kept when the test failed and FERRY_E2E_KEEP=1, for debugging).
func namespace(t testing.TB) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	base := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(base) > 40 {
		base = base[:40]
	}
	name := strings.Trim(base, "-") + "-" + hex.EncodeToString(b)
	cs := client(t)
	_, err := cs.CoreV1().Namespaces().Create(ctx(t), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"ferry.dev/e2e": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	// The namespace's default ServiceAccount appears shortly after; pods need it.
	eventually(t, 30*time.Second, func() error {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx(t), "default", metav1.GetOptions{})
		return err
	})
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("FERRY_E2E_KEEP") == "1" {
			t.Logf("keeping namespace %s", name)
			return
		}
		err := cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// eventually polls f every 500ms until it returns nil, failing the test with
// f's last error after timeout.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// describeOnFailure dumps pods and events of ns when the test fails.
func describeOnFailure(t testing.TB, ns string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, args := range [][]string{
			{"get", "pods,endpointslices,services", "-o", "wide", "-n", ns},
			{"get", "events", "--sort-by=.lastTimestamp", "-n", ns},
		} {
			out, err := kubectlStdin(t, "", args...)
			t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, errOrEmpty(err))
		}
	})
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
