package tests

// L2 announcement of LoadBalancer IPs (ferry-proxy --announce l2 with a LoadBalancerPool):
// a "router" namespace on the cluster bridge asks ARP for a Service's pool address, exactly
// one node answers with its eth0 MAC, and when that node's proxy stops (gracefully, then in a
// second round by SIGKILL) the other node answers within a few seconds; the failover times
// are printed. Needs Ferry's proxy in l2 mode and its operator: e2e/run-e2e sets
// FERRY_E2E_L2=1 when it runs them; otherwise the test skips.
//
// Address plan: the pool 192.168.230.240-192.168.230.243 (on the node segment, which is what
// L2 announcement serves), the router 192.168.230.254 in netns ferry-router.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	routerNetns = "ferry-router"
	routerVeth  = "fv-router"
	routerIP    = "192.168.230.254/24"
	l2Pool      = "192.168.230.240-192.168.230.243"
	l2Nodes     = 2
)

var macPattern = regexp.MustCompile(`(?i)\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b`)

func TestL2AnnouncementFailsOverWhenTheAnnouncersProxyStops(t *testing.T) {
	if os.Getenv("FERRY_E2E_L2") != "1" {
		t.Skip("needs ferry-proxy --announce l2 and ferry-operator (e2e/run-e2e sets FERRY_E2E_L2=1)")
	}
	ns := namespace(t)
	describeOnFailure(t, ns)
	pool := "l2-" + ns
	applyYAML(t, "", fmt.Sprintf(`
apiVersion: ferry.dev/v1alpha1
kind: LoadBalancerPool
metadata:
  name: %s
spec:
  addresses: [%q]
  autoAssign: false
  namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: %s}
`, pool, l2Pool, ns))
	t.Cleanup(func() { kubectl(t, "delete", "loadbalancerpool", pool, "--ignore-not-found") })
	applyYAML(t, ns, svcWebDeployment(2, WebImageV1)+fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata:
  name: web
  annotations: {ferry.dev/pool: %s}
spec:
  type: LoadBalancer
  loadBalancerClass: ferry.dev/pool
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, protocol: TCP}
`, pool))
	svcReadyPods(t, ns, 2)
	var lbIP string
	eventually(t, 60*time.Second, func() error {
		ingress := svcGet(t, ns, "web").Status.LoadBalancer.Ingress
		if len(ingress) != 1 || ingress[0].IP == "" {
			return fmt.Errorf("status.loadBalancer.ingress = %+v", ingress)
		}
		lbIP = ingress[0].IP
		return nil
	})

	startRouter(t)
	// Whatever happens below, the later tests find every proxy running.
	t.Cleanup(func() {
		for n := 1; n <= l2Nodes; n++ {
			clusterProxy(t, "start", n)
		}
	})
	nodeMACs := nodeEth0MACs(t)
	var first int
	eventually(t, 30*time.Second, func() (err error) {
		first, err = onlyAnswerer(lbIP, nodeMACs)
		return err
	})
	t.Logf("%s is announced by node%d", lbIP, first)
	if out, err := inRouter("curl", "-fsS", "--max-time", "3", "http://"+lbIP+"/"); err != nil {
		t.Errorf("GET http://%s/ from the router: %v: %s", lbIP, err, out)
	}

	// A graceful stop releases the Lease: the other node takes over at once.
	failOver(t, "stop", first, lbIP, nodeMACs)
	// Back again, the first node wins its address back, and alone answers for it.
	clusterProxy(t, "start", first)
	var third int
	eventually(t, 30*time.Second, func() (err error) {
		third, err = onlyAnswerer(lbIP, nodeMACs)
		return err
	})
	// Rendezvous hashing: with the same candidates, the same winner.
	if third != first {
		t.Fatalf("after node%d's proxy restarted, node%d announces %s; want node%d back", first, third, lbIP, first)
	}
	// A crash releases nothing: the other node takes over once the Lease expires.
	failOver(t, "crash", third, lbIP, nodeMACs)
	clusterProxy(t, "start", third)
}

// failOver stops (or crashes) node's proxy, which announces ip, and waits until another node
// answers ARP for it alone and serves it; it prints how long that took, and returns the node.
// The proxy stays stopped.
func failOver(t *testing.T, action string, node int, ip string, nodeMACs map[string]int) int {
	t.Helper()
	stopped := make(chan error, 1)
	began := time.Now()
	go func() { stopped <- runClusterProxy(action, node) }()
	var took time.Duration
	var next int
	for {
		next = firstAnswerer(ip, nodeMACs)
		if next != 0 && next != node {
			took = time.Since(began)
			break
		}
		if time.Since(began) > 30*time.Second {
			t.Fatalf("30s after node%d's proxy was told to %s, no other node answers for %s", node, action, ip)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("%s node%d's proxy: %v", action, node, err)
	}
	fmt.Printf("L2 failover of %s from node%d to node%d after a %s of its proxy: %.0f ms\n",
		ip, node, next, map[string]string{"stop": "graceful stop", "crash": "crash (SIGKILL)"}[action],
		took.Seconds()*1000)
	if got, err := onlyAnswerer(ip, nodeMACs); err != nil || got != next {
		t.Errorf("after the failover: answerer node%d, %v; want node%d alone", got, err, next)
	}
	if out, err := inRouter("curl", "-fsS", "--max-time", "3", "http://"+ip+"/"); err != nil {
		t.Errorf("GET http://%s/ from the router after the failover: %v: %s", ip, err, out)
	}
	return next
}

// startRouter creates netns ferry-router with eth0 on the cluster bridge; removed at the end.
func startRouter(t *testing.T) {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", routerNetns).Run() // a leftover of an aborted run
	for _, args := range [][]string{
		{"ip", "netns", "add", routerNetns},
		{"ip", "link", "add", routerVeth, "type", "veth", "peer", "name", "eth0", "netns", routerNetns},
		{"ip", "link", "set", routerVeth, "master", "ferry0", "up"},
		{"ip", "-n", routerNetns, "address", "add", routerIP, "dev", "eth0"},
		{"ip", "-n", routerNetns, "link", "set", "eth0", "up"},
		{"ip", "-n", routerNetns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", routerNetns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", routerNetns, err, out)
		}
	})
}

func inRouter(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", routerNetns}, args...)...).CombinedOutput()
	return string(out), err
}

// nodeEth0MACs maps each node's eth0 MAC to the node's number.
func nodeEth0MACs(t *testing.T) map[string]int {
	t.Helper()
	macs := map[string]int{}
	for n := 1; n <= l2Nodes; n++ {
		out, err := exec.Command("ip", "netns", "exec", "ferry-node"+strconv.Itoa(n),
			"cat", "/sys/class/net/eth0/address").CombinedOutput()
		if err != nil {
			t.Fatalf("eth0 MAC of node%d: %v: %s", n, err, out)
		}
		macs[strings.ToLower(strings.TrimSpace(string(out)))] = n
	}
	return macs
}

// answers asks ARP for ip from the router until count replies came or deadline seconds
// passed (iputils arping), and returns the MACs that answered and arping's output.
func answers(ip, count, deadline string) ([]string, string) {
	out, _ := inRouter("arping", "-c", count, "-w", deadline, "-I", "eth0", ip)
	seen := map[string]bool{}
	for _, mac := range macPattern.FindAllString(out, -1) {
		seen[strings.ToLower(mac)] = true
	}
	macs := make([]string, 0, len(seen))
	for mac := range seen {
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	return macs, out
}

// firstAnswerer is the node whose eth0 answered a single ARP request first; 0 if none did
// within a second.
func firstAnswerer(ip string, nodeMACs map[string]int) int {
	macs, _ := answers(ip, "1", "1")
	if len(macs) == 0 {
		return 0
	}
	return nodeMACs[macs[0]]
}

// onlyAnswerer asks ARP for ip twice from the router and returns the one node that answered;
// an error if none did, if several did, or if the answer is no node's eth0.
func onlyAnswerer(ip string, nodeMACs map[string]int) (int, error) {
	macs, out := answers(ip, "2", "2")
	switch {
	case len(macs) == 0:
		return 0, fmt.Errorf("no ARP answer for %s: %s", ip, out)
	case len(macs) > 1:
		return 0, fmt.Errorf("%s answered by several MACs %v", ip, macs)
	}
	node, ok := nodeMACs[macs[0]]
	if !ok {
		return 0, fmt.Errorf("%s answered by %s, no node's eth0 (%v)", ip, macs[0], nodeMACs)
	}
	return node, nil
}

// clusterProxy runs e2e/cluster/proxy ACTION N, failing the test on error.
func clusterProxy(t *testing.T, action string, node int) {
	t.Helper()
	if err := runClusterProxy(action, node); err != nil {
		t.Errorf("e2e/cluster/proxy %s %d: %v", action, node, err)
	}
}

func runClusterProxy(action string, node int) error {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "cluster", "proxy")
	out, err := exec.Command(script, action, strconv.Itoa(node)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}
