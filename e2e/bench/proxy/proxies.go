package main

import (
	"strconv"
	"strings"
)

// proxySpec says how to run one proxy and how to read its progress.
type proxySpec struct {
	name string
	// argv after `ip netns exec <node>`; env is added to the benchmark's environment.
	argv func(cfg config) ([]string, error)
	env  func(cfg config) []string
	// firstSync reads the proxy's metrics: whether a successful sync has completed, and
	// the seconds the proxy itself reports for its syncs so far.
	firstSync func(metrics string) (done bool, seconds float64)
	// tables are the nftables tables the proxy owns ("family name"), removed after a run.
	tables []string
}

// Both proxies serve metrics on the node's 127.0.0.1:10249 here, one at a time (kube-proxy's
// configuration comes from the local cluster: e2e/cluster/lib/node.sh).
const metricsURL = "http://127.0.0.1:10249/metrics"

func ferrySpec(cfg config) proxySpec {
	return proxySpec{
		name: "ferry-proxy",
		argv: func(cfg config) ([]string, error) {
			return []string{cfg.ferryBinary, "--mode", "nftables", "--cluster-cidr", cfg.clusterCIDR,
				"--hostname-override", cfg.nodeName, "--metrics-bind-address", "127.0.0.1:10249",
				"--healthz-bind-address", "127.0.0.1:10256"}, nil
		},
		env: func(cfg config) []string { return []string{"KUBECONFIG=" + cfg.proxyKubeconfig} },
		firstSync: func(metrics string) (bool, float64) {
			count := sample(metrics, `ferry_proxy_sync_duration_seconds_count{kind="full"}`)
			sum := sample(metrics, `ferry_proxy_sync_duration_seconds_sum{kind="full"}`)
			return count >= 1, sum
		},
		tables: []string{"inet ferry"},
	}
}

func kubeProxySpec(cfg config) proxySpec {
	return proxySpec{
		name: "kube-proxy",
		argv: func(cfg config) ([]string, error) {
			return []string{cfg.kubeProxyBinary, "--config", cfg.kubeProxyConfig, "--v", "1"}, nil
		},
		env: func(config) []string { return nil },
		firstSync: func(metrics string) (bool, float64) {
			// The timestamp is set only by a successful sync; the histogram counts failed ones too.
			// It runs one proxier per IP family; the Services here are IPv4.
			done := sample(metrics, `kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family="IPv4"}`) > 0
			return done, sample(metrics, `kubeproxy_sync_proxy_rules_duration_seconds_sum{ip_family="IPv4"}`)
		},
		tables: []string{"ip kube-proxy", "ip6 kube-proxy"},
	}
}

// sample is the value of the first line of Prometheus text output that starts with series
// followed by a space; 0 when there is none.
func sample(metrics, series string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err == nil {
			return v
		}
	}
	return 0
}
