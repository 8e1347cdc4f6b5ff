// Command proxy measures Ferry's nftables dataplane against upstream kube-proxy in nftables
// mode, on one node of the local cluster and in the same run (e2e/run-bench starts it on a
// cluster brought up with --proxy none):
//
//   - Services x 10 endpoints are selector-less Services with hand-made EndpointSlices, so no
//     pod is needed; sizes grow (1k, then 10k), and each proxy is measured at each size;
//   - full sync: from the proxy's start until its metrics report the first sync, checked
//     against the kernel's ruleset;
//   - programming latency: single-endpoint changes written at a fixed rate, each timed from
//     the API write until the kernel's nf_tables, in the node's namespace, announces a change
//     holding the new endpoint (read straight from its netlink group, see monitor.go);
//   - RSS and CPU seconds of each proxy (and of the nft processes kube-proxy runs).
//
// Both proxies run with their defaults (1 s minimum sync period, 30 s full resync).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy bench:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "proxy bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	client, err := newClient(cfg.kubeconfig)
	if err != nil {
		return err
	}
	f, err := newFleet(ctx, client, cfg.namespace, cfg.endpointsPerService)
	if err != nil {
		return err
	}
	proxies := []proxySpec{ferrySpec(cfg), kubeProxySpec(cfg)}
	var results []result
	for _, size := range cfg.sizes {
		logf("creating Services and EndpointSlices up to %d Services x %d endpoints", size, cfg.endpointsPerService)
		if err := f.growTo(ctx, size); err != nil {
			return err
		}
		for _, p := range proxies {
			logf("%s at %d Services", p.name, size)
			r, err := measure(ctx, cfg, f, p, size)
			if err != nil {
				return fmt.Errorf("%s at %d Services: %w", p.name, size, err)
			}
			results = append(results, r)
		}
	}
	printReport(os.Stdout, results)
	return nil
}
