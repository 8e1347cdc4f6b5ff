package tests

// Service data-plane tests: what a service proxy (Ferry's ferry-proxy or
// upstream kube-proxy) must do for ClusterIP, NodePort and LoadBalancer
// Services. They only use core Kubernetes objects, so they pass with either
// proxy. The host reaches 10.96.0.0/12 through node1 (see e2e/cluster/README.md).

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const node1IP = "192.168.230.11"

// svcWebDeployment returns a Deployment "web" of the web image with replicas
// pods spread over both nodes (required anti-affinity would block surges, so
// a topology spread constraint is used), and a readiness probe.
func svcWebDeployment(replicas int, image string) string {
	return fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
        labelSelector:
          matchLabels: {app: web}
`, replicas) + fmt.Sprintf(webContainer, image)
}

// svcWebService returns a Service "name" selecting app=web with TCP 80->http
// and UDP 53->udp; extra is appended to the spec (indented by two spaces).
func svcWebService(name, extra string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata:
  name: %s
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
  - {name: udp, port: 53, targetPort: udp, protocol: UDP}
%s`, name, extra)
}

// svcReadyPods waits for the Deployment and returns the names of its running pods.
func svcReadyPods(t *testing.T, ns string, want int) []string {
	t.Helper()
	kubectl(t, "rollout", "status", "-n", ns, "deployment/web", "--timeout=120s")
	var names []string
	eventually(t, 60*time.Second, func() error {
		pods, err := client(t).CoreV1().Pods(ns).List(ctx(t), metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		names = nil
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				names = append(names, p.Name)
			}
		}
		if len(names) != want {
			return fmt.Errorf("running pods %v, want %d", names, want)
		}
		return nil
	})
	sort.Strings(names)
	// Every pod is also a ready endpoint of every Service selecting app=web
	// (what the proxy programs from).
	svcs, err := client(t).CoreV1().Services(ns).List(ctx(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range svcs.Items {
		if svc.Spec.Selector["app"] == "web" {
			svcWaitEndpoints(t, ns, svc.Name, want)
		}
	}
	return names
}

// svcWaitEndpoints waits until the EndpointSlices of Service name list want
// ready endpoints.
func svcWaitEndpoints(t *testing.T, ns, name string, want int) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		slices, err := client(t).DiscoveryV1().EndpointSlices(ns).List(ctx(t), metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + name,
		})
		if err != nil {
			return err
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready += len(e.Addresses)
				}
			}
		}
		if ready != want {
			return fmt.Errorf("service %s has %d ready endpoints, want %d", name, ready, want)
		}
		return nil
	})
}

// svcGet returns a Service of ns.
func svcGet(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	svc, err := client(t).CoreV1().Services(ns).Get(ctx(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service %s/%s: %v", ns, name, err)
	}
	return svc
}

// svcHTTP does one GET on a new connection (no keep-alive, so every request
// is a new flow through the proxy) and returns the trimmed body.
func svcHTTP(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// svcAllBackends sends up to maxReq requests to url (each on a new
// connection, 20ms apart, within 45 s; a proxy may coalesce endpoint updates
// for about 1 s) until every pod in want has answered; it fails the
// test otherwise or if an answer is not one of want.
func svcAllBackends(t *testing.T, url string, want []string, maxReq int) {
	t.Helper()
	wantSet := map[string]bool{}
	for _, w := range want {
		wantSet[w] = true
	}
	seen := map[string]int{}
	var lastErr error
	start := time.Now()
	deadline := start.Add(45 * time.Second)
	for i := 0; i < maxReq && time.Now().Before(deadline) && len(seen) < len(want); i++ {
		body, err := svcHTTP(url, 2*time.Second)
		if err != nil {
			// The proxy may not have programmed the Service yet.
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if !wantSet[body] {
			t.Fatalf("GET %s answered %q, not one of the backends %v", url, body, want)
		}
		seen[body]++
		time.Sleep(20 * time.Millisecond)
	}
	if len(seen) < len(want) {
		t.Fatalf("GET %s reached backends %v in %v, want all of %v (last error: %v)", url, seen, time.Since(start), want, lastErr)
	}
	t.Logf("GET %s: answers per backend %v after %v", url, seen, time.Since(start).Round(time.Millisecond))
}

// svcIsBackend reports whether name is one of the sorted pod names.
func svcIsBackend(pods []string, name string) bool {
	i := sort.SearchStrings(pods, name)
	return i < len(pods) && pods[i] == name
}

// svcExecGet runs `/web get url` in pod and returns the trimmed output.
func svcExecGet(t *testing.T, ns, pod, url string) (string, error) {
	t.Helper()
	out, err := kubectlStdin(t, "", "exec", "-n", ns, pod, "--", "/web", "get", url, "2s")
	return strings.TrimSpace(out), err
}

// ClusterIP from the host: HTTP reaches every backend, UDP echo works.
func TestServiceClusterIPFromHost(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, svcWebDeployment(3, WebImageV1)+"---"+svcWebService("web", ""))
	pods := svcReadyPods(t, ns, 3)
	ip := svcGet(t, ns, "web").Spec.ClusterIP

	svcAllBackends(t, "http://"+net.JoinHostPort(ip, "80")+"/", pods, 300)

	got := udpEcho(t, net.JoinHostPort(ip, "53"))
	if !svcIsBackend(pods, got) {
		t.Errorf("UDP echo via %s:53 = %q, not one of the backends %v", ip, got, pods)
	}
}

// ClusterIP from a pod on each node: kubectl exec /web get / and /web udp.
func TestServiceClusterIPFromPod(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, svcWebDeployment(2, WebImageV1)+"---"+svcWebService("web", ""))
	for _, node := range []string{"node1", "node2"} {
		applyYAML(t, ns, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata:
  name: client-%s
  labels: {app: client}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: %s}
`, node, node)+strings.Replace(fmt.Sprintf(webContainer, WebImageV1), "\n      ", "\n  ", -1))
	}
	pods := svcReadyPods(t, ns, 2)
	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "pod/client-node1", "pod/client-node2", "--timeout=90s")
	ip := svcGet(t, ns, "web").Spec.ClusterIP

	for _, cl := range []string{"client-node1", "client-node2"} {
		seen := map[string]bool{}
		var lastErr error
		for i := 0; i < 15 && len(seen) < len(pods); i++ {
			out, err := svcExecGet(t, ns, cl, "http://"+ip+"/")
			if err != nil {
				lastErr = err
				time.Sleep(300 * time.Millisecond)
				continue
			}
			if !svcIsBackend(pods, out) {
				t.Fatalf("%s: GET http://%s/ = %q, not one of the backends %v", cl, ip, out, pods)
			}
			seen[out] = true
		}
		if len(seen) == 0 {
			t.Fatalf("%s: GET http://%s/ never succeeded: %v", cl, ip, lastErr)
		}
		t.Logf("%s reached %v via %s", cl, seen, ip)

		var udp string
		eventually(t, 15*time.Second, func() error {
			out, err := kubectlStdin(t, "", "exec", "-n", ns, cl, "--", "/web", "udp", net.JoinHostPort(ip, "53"))
			udp = strings.TrimSpace(out)
			return err
		})
		if !svcIsBackend(pods, udp) {
			t.Errorf("%s: UDP echo via %s:53 = %q, not one of the backends %v", cl, ip, udp, pods)
		}
	}
}

// NodePort from the host at each node's IP reaches every backend (the
// default externalTrafficPolicy Cluster forwards to pods on other nodes).
func TestServiceNodePort(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, svcWebDeployment(3, WebImageV1)+"---"+svcWebService("web", "  type: NodePort\n"))
	pods := svcReadyPods(t, ns, 3)
	svc := svcGet(t, ns, "web")
	var nodePort, udpNodePort int32
	for _, p := range svc.Spec.Ports {
		if p.Protocol == corev1.ProtocolTCP {
			nodePort = p.NodePort
		} else {
			udpNodePort = p.NodePort
		}
	}
	if nodePort == 0 || udpNodePort == 0 {
		t.Fatalf("service has no node ports: %+v", svc.Spec.Ports)
	}
	for _, nodeIP := range []string{node1IP, "192.168.230.12"} {
		svcAllBackends(t, "http://"+net.JoinHostPort(nodeIP, strconv.Itoa(int(nodePort)))+"/", pods, 300)
		got := udpEcho(t, net.JoinHostPort(nodeIP, strconv.Itoa(int(udpNodePort))))
		if !svcIsBackend(pods, got) {
			t.Errorf("UDP echo via %s:%d = %q, not one of the backends %v", nodeIP, udpNodePort, got, pods)
		}
	}
}

// A LoadBalancer Service's status IP (set by the test, as a load-balancer
// controller would) is served by the proxy on the node the host routes it to.
func TestServiceLoadBalancerIP(t *testing.T) {
	const lbIP = "203.0.113.10"
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, svcWebDeployment(3, WebImageV1)+"---"+svcWebService("web",
		"  type: LoadBalancer\n  loadBalancerClass: example.com/none\n"))
	pods := svcReadyPods(t, ns, 3)
	kubectl(t, "patch", "svc", "web", "-n", ns, "--subresource=status", "--type=merge",
		"-p", `{"status":{"loadBalancer":{"ingress":[{"ip":"`+lbIP+`"}]}}}`)
	if got := svcGet(t, ns, "web").Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != lbIP {
		t.Fatalf("status.loadBalancer.ingress = %+v, want %s", got, lbIP)
	}

	if out, err := exec.Command("ip", "route", "replace", lbIP+"/32", "via", node1IP).CombinedOutput(); err != nil {
		t.Fatalf("ip route replace %s/32 via %s: %v: %s", lbIP, node1IP, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "route", "del", lbIP+"/32", "via", node1IP).CombinedOutput(); err != nil {
			t.Errorf("ip route del %s/32: %v: %s", lbIP, err, out)
		}
	})

	svcAllBackends(t, "http://"+lbIP+"/", pods, 300)
	got := udpEcho(t, net.JoinHostPort(lbIP, "53"))
	if !svcIsBackend(pods, got) {
		t.Errorf("UDP echo via %s:53 = %q, not one of the backends %v", lbIP, got, pods)
	}
}

// sessionAffinity ClientIP: every request from the host lands on one pod.
func TestServiceSessionAffinityClientIP(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, svcWebDeployment(3, WebImageV1)+"---"+svcWebService("web", "  sessionAffinity: ClientIP\n"))
	pods := svcReadyPods(t, ns, 3)
	url := "http://" + svcGet(t, ns, "web").Spec.ClusterIP + "/"

	// First answer (waiting for the proxy to program the Service).
	var first string
	eventually(t, 30*time.Second, func() error {
		var err error
		first, err = svcHTTP(url, 2*time.Second)
		return err
	})
	if !svcIsBackend(pods, first) {
		t.Fatalf("GET %s = %q, not one of the backends %v", url, first, pods)
	}
	counts := map[string]int{}
	for i := 0; i < 10; i++ {
		body, err := svcHTTP(url, 2*time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		counts[body]++
	}
	if len(counts) != 1 || counts[first] != 10 {
		t.Errorf("with sessionAffinity ClientIP, 10 requests reached %v, want all on %s", counts, first)
	}
}

// Hairpin: the only backend of a Service reaches itself through the ClusterIP.
func TestServiceHairpin(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, svcWebDeployment(1, WebImageV1)+"---"+svcWebService("web", ""))
	pods := svcReadyPods(t, ns, 1)
	ip := svcGet(t, ns, "web").Spec.ClusterIP
	var out string
	eventually(t, 30*time.Second, func() error {
		var err error
		out, err = svcExecGet(t, ns, pods[0], "http://"+ip+"/")
		return err
	})
	if out != pods[0] {
		t.Errorf("hairpin GET http://%s/ from %s = %q, want %q", ip, pods[0], out, pods[0])
	}
}

// A Service without endpoints is rejected at once: connecting from the host
// gets "connection refused" quickly, not a timeout.
func TestServiceNoEndpointsRejects(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, `
apiVersion: v1
kind: Service
metadata:
  name: empty
spec:
  selector: {app: nothing-matches-this}
  ports:
  - {name: http, port: 80, targetPort: 8080, protocol: TCP}
`)
	addr := net.JoinHostPort(svcGet(t, ns, "empty").Spec.ClusterIP, "80")
	// Until the proxy has programmed the Service, the packet is dropped (the
	// host does not forward), so this waits for the reject rule.
	eventually(t, 30*time.Second, func() error {
		start := time.Now()
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		took := time.Since(start)
		if err == nil {
			conn.Close()
			return fmt.Errorf("connect to %s succeeded, want connection refused", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("connect to %s after %v: %v, want connection refused", addr, took, err)
		}
		if took > 500*time.Millisecond {
			return fmt.Errorf("connect to %s refused only after %v", addr, took)
		}
		return nil
	})
	// And it stays that way: every further attempt is refused at once.
	for i := 0; i < 5; i++ {
		start := time.Now()
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		took := time.Since(start)
		if err == nil {
			conn.Close()
			t.Fatalf("attempt %d: connect to %s succeeded", i+1, addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || took > 500*time.Millisecond {
			t.Fatalf("attempt %d: connect to %s after %v: %v, want connection refused in < 500ms", i+1, addr, took, err)
		}
	}
}

// A rolling update v1 -> v2 (maxSurge 1, maxUnavailable 0, readiness probe,
// preStop sleep) loses no request of a client looping from the host, and
// afterwards only v2 answers.
func TestServiceRollingUpdateNoErrors(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 20
      containers:
      - name: web
        image: `+WebImageV1+`
        imagePullPolicy: Never
        ports:
        - {name: http, containerPort: 8080, protocol: TCP}
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
        lifecycle:
          preStop:
            sleep: {seconds: 5}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
`)
	svcReadyPods(t, ns, 3)
	url := "http://" + svcGet(t, ns, "web").Spec.ClusterIP + "/version"
	eventually(t, 30*time.Second, func() error {
		v, err := svcHTTP(url, 2*time.Second)
		if err == nil && v != "v1" {
			err = fmt.Errorf("version %q before the update, want v1", v)
		}
		return err
	})

	// Client loop: one request per 100ms on a new connection, until the
	// rollout is done plus 8 s (so the last v1 pod has left its 5 s preStop
	// sleep and exited), at most 60 s / 600 requests.
	done := make(chan struct{})
	var (
		mu       sync.Mutex
		failures []string
		versions = map[string]int{}
		total    int
	)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(60 * time.Second)
		var stopAt time.Time
		for i := 0; i < 600 && time.Now().Before(deadline); i++ {
			if stopAt.IsZero() {
				select {
				case <-done:
					stopAt = time.Now().Add(8 * time.Second)
				default:
				}
			} else if time.Now().After(stopAt) {
				return
			}
			start := time.Now()
			v, err := svcHTTP(url, 2*time.Second)
			mu.Lock()
			total++
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s (+%v): %v", start.Format("15:04:05.000"), time.Since(start).Round(time.Millisecond), err))
			} else {
				versions[v]++
			}
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()

	kubectl(t, "set", "image", "-n", ns, "deployment/web", "web="+WebImageV2)
	_, rolloutErr := kubectlStdin(t, "", "rollout", "status", "-n", ns, "deployment/web", "--timeout=50s")
	close(done)
	wg.Wait()
	if rolloutErr != nil {
		t.Fatalf("rollout: %v", rolloutErr)
	}
	t.Logf("during the rollout: %d requests, answers by version %v, %d failed", total, versions, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed during the rolling update:\n%s", len(failures), total, strings.Join(failures, "\n"))
	}
	if versions["v2"] == 0 {
		t.Errorf("no v2 answer during the loop (answers %v)", versions)
	}

	// Terminating v1 pods leave the endpoints shortly after the rollout;
	// then a batch of requests answers v2 only.
	eventually(t, 30*time.Second, func() error {
		for i := 0; i < 15; i++ {
			v, err := svcHTTP(url, 2*time.Second)
			if err != nil {
				return err
			}
			if v != "v2" {
				return fmt.Errorf("request %d answered %q after the rollout, want v2", i+1, v)
			}
		}
		return nil
	})
}
