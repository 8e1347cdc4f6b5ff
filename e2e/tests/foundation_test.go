package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// webPodSpec is the pod template of the web test image with a readiness probe.
const webContainer = `
      containers:
      - name: web
        image: %s
        imagePullPolicy: Never
        ports:
        - {name: http, containerPort: 8080, protocol: TCP}
        - {name: udp, containerPort: 5353, protocol: UDP}
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
`

// A pod of the locally built web image becomes Ready and answers on its pod
// IP from the host (which routes 10.244.N.0/24 to node N).
func TestPodServesOnPodIP(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, `
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: node1}
`+strings.Replace(fmt.Sprintf(webContainer, WebImageV1), "\n      ", "\n  ", -1))

	kubectl(t, "wait", "-n", ns, "--for=condition=Ready", "pod/web", "--timeout=90s")
	pod, err := client(t).CoreV1().Pods(ns).Get(ctx(t), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pod.Status.PodIP, "10.244.1.") {
		t.Errorf("pod IP %q is not in node1's pod CIDR 10.244.1.0/24", pod.Status.PodIP)
	}

	base := "http://" + net.JoinHostPort(pod.Status.PodIP, "8080")
	if got := httpGet(t, base+"/"); got != "web" {
		t.Errorf("GET / = %q, want the pod's hostname %q", got, "web")
	}
	if got := httpGet(t, base+"/version"); got != "v1" {
		t.Errorf("GET /version = %q, want v1", got)
	}
	if got := udpEcho(t, net.JoinHostPort(pod.Status.PodIP, "5353")); got != "web" {
		t.Errorf("UDP echo = %q, want %q", got, "web")
	}
	// kubectl logs goes API server -> kubelet at the node IP.
	if logs := kubectl(t, "logs", "-n", ns, "web"); !strings.Contains(logs, "web v1") {
		t.Errorf("kubectl logs: %q does not mention %q", logs, "web v1")
	}
}

// A 2-replica Deployment behind a Service gets an EndpointSlice listing both
// pods as ready.
func TestDeploymentEndpointSlices(t *testing.T) {
	ns := namespace(t)
	describeOnFailure(t, ns)
	applyYAML(t, ns, `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
`+fmt.Sprintf(webContainer, WebImageV1)+`
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
  - {name: udp, port: 53, targetPort: udp, protocol: UDP}
`)
	kubectl(t, "rollout", "status", "-n", ns, "deployment/web", "--timeout=120s")

	cs := client(t)
	var want []string
	pods, err := cs.CoreV1().Pods(ns).List(ctx(t), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			want = append(want, p.Status.PodIP)
		}
	}
	sort.Strings(want)
	if len(want) != 2 {
		t.Fatalf("running pods have IPs %v, want 2", want)
	}

	eventually(t, 60*time.Second, func() error {
		slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx(t), metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=web",
		})
		if err != nil {
			return err
		}
		var ready []string
		for _, s := range slices.Items {
			if s.AddressType != discoveryv1.AddressTypeIPv4 {
				continue
			}
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready = append(ready, e.Addresses...)
				}
			}
			if len(s.Ports) != 2 {
				return fmt.Errorf("slice %s has ports %v, want http and udp", s.Name, s.Ports)
			}
		}
		sort.Strings(ready)
		if strings.Join(ready, ",") != strings.Join(want, ",") {
			return fmt.Errorf("ready endpoints %v, want %v", ready, want)
		}
		return nil
	})
}

// The cluster's kubectl can explain built-in types (CRD tests will use the same).
func TestKubectlExplain(t *testing.T) {
	out := kubectl(t, "explain", "deployment.spec.replicas")
	if !strings.Contains(out, "replicas") {
		t.Errorf("kubectl explain output lacks the field:\n%s", out)
	}
}

// httpGet returns the trimmed body of a 200 response (retrying briefly).
func httpGet(t testing.TB, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	var body string
	eventually(t, 15*time.Second, func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
		}
		body = strings.TrimSpace(string(b))
		return nil
	})
	return body
}

// udpEcho sends a datagram to addr and returns the trimmed reply.
func udpEcho(t testing.TB, addr string) string {
	t.Helper()
	var reply string
	eventually(t, 15*time.Second, func() error {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		reply = strings.TrimSpace(string(buf[:n]))
		return nil
	})
	return reply
}
