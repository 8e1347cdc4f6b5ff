package main

import (
	"context"
	"maps"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestMonitorInNetnsSeesNftablesChanges runs the monitor against the real kernel: it
// needs root, ip and nft, and creates (then deletes) the network namespace benchmon-test.
// FERRY_BENCH_NETNS_TEST=1 go test -run Netns ./bench/proxy/
func TestMonitorInNetnsSeesNftablesChanges(t *testing.T) {
	if os.Getenv("FERRY_BENCH_NETNS_TEST") != "1" {
		t.Skip("set FERRY_BENCH_NETNS_TEST=1 to run (as root: creates the netns benchmon-test)")
	}
	const ns, other = "benchmon-test", "benchmon-other"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	for _, name := range []string{ns, other} {
		run("ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	}
	nft := func(in string, args ...string) {
		t.Helper()
		run(append([]string{"ip", "netns", "exec", in, "nft"}, args...)...)
	}

	m, err := startMonitor(context.Background(), config{nodeNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop()
	m.await("10.250.0.6") // in another namespace: never seen
	nft(other, "add", "table", "inet", "t")
	nft(other, "add", "chain", "inet", "t", "c")
	nft(other, "add", "rule", "inet", "t", "c", "ip", "daddr", "10.250.0.6", "accept")
	m.await("10.250.0.7") // raw, in a rule's expression
	nft(ns, "add", "table", "inet", "t")
	nft(ns, "add", "chain", "inet", "t", "c")
	nft(ns, "add", "rule", "inet", "t", "c", "ip", "daddr", "10.250.0.7", "accept")
	m.await("10.250.0.8") // raw, in a set element
	nft(ns, "add", "set", "inet", "t", "s", "{ type ipv4_addr; }")
	nft(ns, "add", "element", "inet", "t", "s", "{ 10.250.0.8 }")
	m.await("10.250.0.9") // text, in a chain name
	nft(ns, "add", "chain", "inet", "t", "endpoint-X-ns/s/tcp/http__10.250.0.9/8080")

	got, missed := m.latencies(2 * time.Second)
	m.mu.Lock()
	seen := maps.Clone(m.seen)
	m.mu.Unlock()
	t.Logf("latencies %v", seen)
	if _, ok := seen["10.250.0.6"]; ok || len(got) != 3 || missed != 1 {
		t.Fatalf("saw %v, missed %d; want 10.250.0.7-9 and 1 missed (10.250.0.6, in another namespace)", seen, missed)
	}
	for _, d := range got {
		if d <= 0 || d > 2*time.Second {
			t.Errorf("latency %v is out of range", d)
		}
	}
}
