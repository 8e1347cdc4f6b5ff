package chart

// A real `helm install` into the local cluster (e2e/cluster/up --proxy none), replacing
// the proxy process `up` would start with the chart's DaemonSet, then `helm uninstall`,
// which must leave no Ferry kernel state on any node. e2e/run-e2e (make test) runs it on a
// fresh cluster; by hand, opt in with FERRY_E2E_HELM_INSTALL=1:
//
//	cargo build --release --locked --workspace --bins
//	e2e/cluster/up --nodes 2 --proxy none && source e2e/cluster/env
//	cd e2e && FERRY_E2E_HELM_INSTALL=1 go test ./chart/ -run TestHelmInstall -v
//
// Images come from images/build-oci (release binaries in $FERRY_BIN_DIR, default
// target/release) and are imported into every node's containerd; with
// FERRY_E2E_IMAGES_PREBUILT=1 the test uses the ferry.dev/*:dev images already there.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	release   = "ferry"
	releaseNS = "ferry-e2e-system"
	// The API server as every node reaches it (e2e/cluster/lib/common.sh: BRIDGE_IP).
	apiServerHost = "192.168.230.1"
)

func TestHelmInstall(t *testing.T) {
	if os.Getenv("FERRY_E2E_HELM_INSTALL") != "1" {
		t.Skip("set FERRY_E2E_HELM_INSTALL=1 (needs release binaries and a cluster started with --proxy none)")
	}
	k := needCluster(t)
	work := os.Getenv("FERRY_WORK")
	if work == "" {
		work = filepath.Join(e2eDir, ".work")
	}
	nodes := clusterNodes(t, work)
	// Whatever serves a Service or is left after uninstall must come from this release.
	for _, n := range nodes {
		if err := ferryKernelState(t, n.netns); err != nil {
			t.Fatalf("before the install: %v", err)
		}
	}
	importImages(t, work, nodes)

	// A previous run's namespace may still be terminating.
	eventually(t, 3*time.Minute, func() error {
		if ns := kubectlOut(t, k, "get", "namespace", releaseNS, "--ignore-not-found", "-o", "name"); ns != "" {
			return fmt.Errorf("%s from an earlier run still exists", ns)
		}
		return nil
	})

	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled { // the test failed before its own uninstall: don't leave Ferry behind
			if _, err := runHelm(t, "uninstall", release, "-n", releaseNS, "--wait", "--timeout=3m", "--ignore-not-found"); err != nil {
				t.Logf("uninstall with hooks failed (%v); uninstalling without", err)
				_, _ = runHelm(t, "uninstall", release, "-n", releaseNS, "--no-hooks", "--ignore-not-found")
			}
		}
		_, _ = run(t, "", k, "delete", "namespace", releaseNS, "--ignore-not-found", "--wait=false")
	})

	start := time.Now()
	out, err := runHelm(t, "install", release, chartDir, "-n", releaseNS, "--create-namespace",
		"--wait", "--timeout=5m",
		"--set", "k8sServiceHost="+apiServerHost, "--set", "k8sServicePort=6443",
		"--set", "proxy.config.mode=nftables", // the host kernel has no IPVS (e2e/vm tests it)
		"--set", "proxy.config.clusterCIDR=10.244.0.0/16",
		"--set", "proxy.image.repository=ferry.dev/ferry-proxy", "--set", "proxy.image.tag=dev",
		"--set", "proxy.image.pullPolicy=Never",
		"--set", "operator.image.repository=ferry.dev/ferry-operator", "--set", "operator.image.tag=dev",
		"--set", "operator.image.pullPolicy=Never",
		"--set", "cleanupOnUninstall.image.repository=ferry.dev/kubectl", "--set", "cleanupOnUninstall.image.tag=dev",
		"--set", "cleanupOnUninstall.image.pullPolicy=Never")
	if err != nil {
		dumpRelease(t, k)
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	t.Logf("helm install --wait took %v", time.Since(start).Round(time.Second))

	// `helm install --wait` counts a DaemonSet ready with maxUnavailable pods still
	// unready (on one node: none ready), so readiness is checked here, in full.
	ready := t.Run("operator and proxies are Ready", func(t *testing.T) {
		eventually(t, 3*time.Minute, func() error {
			if err := proxyReadyOnEveryNode(t, k, nodes); err != nil {
				return err
			}
			return operatorReady(t, k)
		})
	})
	if !ready {
		dumpRelease(t, k)
	}

	// Traffic checks only make sense with running proxies; uninstall is tested either way.
	ready = ready && t.Run("proxy serves the kubernetes Service on every node", func(t *testing.T) {
		for _, n := range nodes {
			eventually(t, 60*time.Second, func() error {
				// Any HTTP status proves the ClusterIP reached the API server.
				code, err := run(t, "", "ip", "netns", "exec", n.netns, "curl", "-sk", "-o", "/dev/null",
					"-w", "%{http_code}", "--max-time", "3", "https://10.96.0.1/readyz")
				if err != nil || code == "000" {
					return fmt.Errorf("%s: https://10.96.0.1 -> %q %v", n.netns, code, err)
				}
				return nil
			})
		}
	})

	_ = ready && t.Run("an App's Service answers through the proxy", func(t *testing.T) {
		appServiceAnswers(t, k, nodes)
	})

	_ = ready && t.Run("another operator replica takes over the Lease", func(t *testing.T) {
		standbyTakesOver(t, k)
	})

	// The positive half of the uninstall check: there was a table to remove on every node.
	for _, n := range nodes {
		if tables, err := run(t, "", "ip", "netns", "exec", n.netns, "nft", "list", "tables"); err != nil || !ferryTable.MatchString(tables) {
			t.Errorf("%s: no Ferry nftables table while installed (%v):\n%s", n.netns, err, tables)
		}
	}

	start = time.Now()
	out, err = runHelm(t, "uninstall", release, "-n", releaseNS, "--wait", "--timeout=5m")
	uninstalled = err == nil
	if err != nil {
		dumpRelease(t, k)
		t.Fatalf("helm uninstall: %v\n%s", err, out)
	}
	t.Logf("helm uninstall --wait took %v", time.Since(start).Round(time.Second))

	// The proxies clean up as they exit, after `helm uninstall` returns: give them time.
	for _, n := range nodes {
		eventually(t, 90*time.Second, func() error { return ferryKernelState(t, n.netns) })
	}
}

// importImages builds Ferry's images from the release binaries with images/build-oci and
// imports them into every node's containerd (socket path: e2e/cluster/lib/node.sh), unless
// FERRY_E2E_IMAGES_PREBUILT=1 says they are there already.
func importImages(t *testing.T, work string, nodes []node) {
	t.Helper()
	if os.Getenv("FERRY_E2E_IMAGES_PREBUILT") == "1" {
		return
	}
	build := []string{filepath.Join(repoRoot, "images", "build-oci"), "--out", t.TempDir(),
		"--kubectl", filepath.Join(work, "bin", "kubectl")}
	if dir := os.Getenv("FERRY_BIN_DIR"); dir != "" {
		build = append(build, "--bin-dir", dir)
	}
	for _, n := range nodes {
		build = append(build, "--import", filepath.Join(work, n.name, "containerd.sock"))
	}
	if out, err := run(t, "", build...); err != nil {
		t.Fatalf("building images: %v\n%s", err, out)
	}
}

// proxyReadyOnEveryNode says which node lacks a Ready proxy pod of the current revision.
func proxyReadyOnEveryNode(t *testing.T, k string, nodes []node) error {
	t.Helper()
	ds := kubectlOut(t, k, "-n", releaseNS, "get", "daemonset/ferry-proxy", "-o",
		"jsonpath={.status.desiredNumberScheduled} {.status.updatedNumberScheduled} {.status.numberReady}")
	if want := fmt.Sprintf("%d %d %d", len(nodes), len(nodes), len(nodes)); ds != want {
		return fmt.Errorf("proxy DaemonSet desired/updated/ready %q, want %q (one per node)", ds, want)
	}
	pods := kubectlOut(t, k, "-n", releaseNS, "get", "pods", "-l", "app.kubernetes.io/name=ferry-proxy",
		"-o", `jsonpath={range .items[*]}{.spec.nodeName}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	readyOn := map[string]bool{}
	for _, line := range strings.Fields(pods) {
		name, status, _ := strings.Cut(line, "=")
		readyOn[name] = readyOn[name] || status == "True"
	}
	for _, n := range nodes {
		if !readyOn[n.name] {
			return fmt.Errorf("no Ready proxy pod on %s (pods: %q)", n.name, pods)
		}
	}
	return nil
}

// operatorReady checks both replicas are Ready and exactly one of them leads: the Lease
// (named and placed as the operator's defaults say) is held by one of the pods.
func operatorReady(t *testing.T, k string) error {
	t.Helper()
	if r := kubectlOut(t, k, "-n", releaseNS, "get", "deployment/ferry-operator", "-o",
		"jsonpath={.status.readyReplicas}"); r != "2" {
		return fmt.Errorf("operator ready replicas %q, want 2", r)
	}
	pods := strings.Fields(kubectlOut(t, k, "-n", releaseNS, "get", "pods", "-l",
		"app.kubernetes.io/name=ferry-operator", "-o", "jsonpath={.items[*].metadata.name}"))
	if holder := leaseHolder(t, k); !slices.Contains(pods, holder) {
		return fmt.Errorf("Lease ferry-operator held by %q, want one of the operator pods %v", holder, pods)
	}
	return nil
}

// standbyTakesOver deletes the operator pod that holds the Lease and waits for a live
// replica to hold it: leader election works with the chart's RBAC and pod identities.
func standbyTakesOver(t *testing.T, k string) {
	t.Helper()
	leader := leaseHolder(t, k)
	if out, err := run(t, "", k, "-n", releaseNS, "delete", "pod", leader, "--wait=false"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	eventually(t, 60*time.Second, func() error {
		if holder := leaseHolder(t, k); holder == leader || holder == "" {
			return fmt.Errorf("Lease ferry-operator still held by %q, the deleted pod", holder)
		}
		return operatorReady(t, k)
	})
}

func leaseHolder(t *testing.T, k string) string {
	t.Helper()
	return kubectlOut(t, k, "-n", releaseNS, "get", "lease", "ferry-operator", "--ignore-not-found",
		"-o", "jsonpath={.spec.holderIdentity}")
}

// appServiceAnswers creates an App with a Service (as e2e/demo/web-app.yaml does) and
// fetches its ClusterIP from every node's network namespace and from one of its pods, so
// both locally generated and forwarded traffic go through the DaemonSet's proxies.
func appServiceAnswers(t *testing.T, k string, nodes []node) {
	t.Helper()
	appNS := "ferry-e2e-helm-app"
	t.Cleanup(func() { _, _ = run(t, "", k, "delete", "namespace", appNS, "--ignore-not-found", "--wait=false") })
	if out, err := run(t, "", k, "create", "namespace", appNS); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	app := `
apiVersion: ferry.dev/v1alpha1
kind: App
metadata: {name: web}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: ferry.dev/e2e/web:v1
        imagePullPolicy: Never
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
  service:
    type: ClusterIP
    ports: [{name: http, port: 80, targetPort: 8080}]
`
	eventually(t, 30*time.Second, func() error { // the default ServiceAccount appears shortly
		_, err := run(t, app, k, "-n", appNS, "apply", "-f", "-")
		return err
	})
	var ip string
	eventually(t, 120*time.Second, func() error {
		ip = kubectlOut(t, k, "-n", appNS, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}", "--ignore-not-found")
		if ip == "" {
			return fmt.Errorf("the App's Service does not exist yet")
		}
		return nil
	})
	url := "http://" + ip + "/"
	for _, n := range nodes {
		eventually(t, 120*time.Second, func() error {
			body, err := run(t, "", "ip", "netns", "exec", n.netns, "curl", "-fsS", "--max-time", "3", url)
			return answeredByPod(t, url, n.netns, body, err)
		})
	}
	pod := kubectlOut(t, k, "-n", appNS, "get", "pods", "-l", "app=web", "--field-selector=status.phase=Running",
		"-o", "jsonpath={.items[0].metadata.name}")
	eventually(t, 30*time.Second, func() error {
		body, err := run(t, "", k, "-n", appNS, "exec", pod, "--", "/web", "get", url, "3s")
		return answeredByPod(t, url, "pod "+pod, body, err)
	})
}

// answeredByPod checks a GET of the web image's / answered with a pod's name.
func answeredByPod(t *testing.T, url, from, body string, err error) error {
	t.Helper()
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) == "" {
		return fmt.Errorf("%s (from %s) answered nothing, want the pod's name", url, from)
	}
	t.Logf("%s (from %s) -> %s", url, from, strings.TrimSpace(body))
	return nil
}

// node is a node of the local cluster: its Kubernetes name and its network namespace.
type node struct{ name, netns string }

// clusterNodes returns the nodes of the cluster e2e/cluster/up started, after checking it
// runs no service proxy of its own (the DaemonSet replaces it).
func clusterNodes(t *testing.T, work string) []node {
	t.Helper()
	env := map[string]string{}
	f, err := os.Open(filepath.Join(work, "cluster.env"))
	if err != nil {
		t.Fatalf("no local cluster state (%v): start it with e2e/cluster/up --proxy none", err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			env[k] = v
		}
	}
	if env["PROXY"] != "none" {
		t.Fatalf("the cluster runs its own service proxy (%q): restart it with e2e/cluster/up --proxy none", env["PROXY"])
	}
	n, err := strconv.Atoi(env["NODES"])
	if err != nil || n < 1 {
		t.Fatalf("cluster.env: NODES=%q", env["NODES"])
	}
	var nodes []node
	for i := 1; i <= n; i++ { // names: e2e/cluster/lib/common.sh (node_name, node_ns)
		nodes = append(nodes, node{name: fmt.Sprintf("node%d", i), netns: fmt.Sprintf("ferry-node%d", i)})
	}
	return nodes
}

var ferryTable = regexp.MustCompile(`(?m)^table \S+ ferry$`)

// ferryKernelState returns an error naming what Ferry left in node netns ns: its nftables
// table, its dummy interface, or IPVS virtual servers (where the kernel has IPVS).
func ferryKernelState(t *testing.T, ns string) error {
	t.Helper()
	tables, err := run(t, "", "ip", "netns", "exec", ns, "nft", "list", "tables")
	if err != nil {
		return err
	}
	if ferryTable.MatchString(tables) {
		return fmt.Errorf("%s still has Ferry's nftables table:\n%s", ns, tables)
	}
	if _, err := run(t, "", "ip", "netns", "exec", ns, "ip", "link", "show", "ferry-ipvs0"); err == nil {
		return fmt.Errorf("%s still has the ferry-ipvs0 interface", ns)
	}
	// /proc/net/ip_vs is per network namespace and exists only with IPVS loaded.
	if ipvs, err := run(t, "", "ip", "netns", "exec", ns, "cat", "/proc/net/ip_vs"); err == nil {
		for _, line := range strings.Split(ipvs, "\n") {
			if strings.HasPrefix(line, "TCP") || strings.HasPrefix(line, "UDP") || strings.HasPrefix(line, "SCTP") {
				return fmt.Errorf("%s still has IPVS virtual servers:\n%s", ns, ipvs)
			}
		}
	}
	return nil
}

func kubectlOut(t *testing.T, k string, args ...string) string {
	t.Helper()
	out, err := run(t, "", append([]string{k}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// dumpRelease logs what a failed install or uninstall left, to say why.
func dumpRelease(t *testing.T, k string) {
	t.Helper()
	for _, args := range [][]string{
		{"-n", releaseNS, "get", "all,jobs", "-o", "wide"},
		{"-n", releaseNS, "get", "events", "--sort-by=.lastTimestamp"},
		{"-n", releaseNS, "logs", "-l", "app.kubernetes.io/instance=" + release, "--all-containers", "--tail=40", "--prefix"},
	} {
		out, err := run(t, "", append([]string{k}, args...)...)
		t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, err)
	}
}

// eventually polls f every 500ms until it returns nil, failing the test with f's last
// error after timeout.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
