package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type config struct {
	kubeconfig          string // the benchmark's own client (admin)
	proxyKubeconfig     string // the identity both proxies run as
	nodeNamespace       string // network namespace of the node the proxies program
	nodeName            string
	clusterCIDR         string
	ferryBinary         string
	kubeProxyBinary     string
	kubeProxyConfig     string // its KubeProxyConfiguration: nftables mode, metrics on 127.0.0.1:10249
	workDir             string // logs and kube-proxy's configuration
	namespace           string // where the Services and EndpointSlices live
	sizes               []int
	endpointsPerService int
	changes             int
	changeInterval      time.Duration
	syncTimeout         time.Duration
}

func parseFlags(args []string) (config, error) {
	var cfg config
	var sizes string
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.StringVar(&cfg.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the benchmark's client")
	fs.StringVar(&cfg.proxyKubeconfig, "proxy-kubeconfig", "", "kubeconfig both proxies run with")
	fs.StringVar(&cfg.nodeNamespace, "node-netns", "ferry-node1", "network namespace of the node")
	fs.StringVar(&cfg.nodeName, "node-name", "node1", "the node's name")
	fs.StringVar(&cfg.clusterCIDR, "cluster-cidr", "10.244.0.0/16", "the cluster's pod CIDR (for ferry-proxy)")
	fs.StringVar(&cfg.ferryBinary, "ferry-proxy", "", "ferry-proxy binary")
	fs.StringVar(&cfg.kubeProxyBinary, "kube-proxy", "", "kube-proxy binary")
	fs.StringVar(&cfg.kubeProxyConfig, "kube-proxy-config", "", "kube-proxy's configuration file")
	fs.StringVar(&cfg.workDir, "work-dir", "", "directory for logs and generated configuration")
	fs.StringVar(&cfg.namespace, "namespace", "proxy-bench", "namespace of the benchmark's objects")
	fs.StringVar(&sizes, "sizes", "1000,10000", "Service counts, ascending, comma-separated")
	fs.IntVar(&cfg.endpointsPerService, "endpoints", 10, "endpoints per Service")
	fs.IntVar(&cfg.changes, "changes", 200, "single-endpoint changes per proxy and size")
	fs.DurationVar(&cfg.changeInterval, "change-interval", 250*time.Millisecond, "time between two changes")
	fs.DurationVar(&cfg.syncTimeout, "sync-timeout", 15*time.Minute, "longest wait for a first sync")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for name, value := range map[string]string{
		"-kubeconfig": cfg.kubeconfig, "-proxy-kubeconfig": cfg.proxyKubeconfig,
		"-ferry-proxy": cfg.ferryBinary, "-kube-proxy": cfg.kubeProxyBinary,
		"-kube-proxy-config": cfg.kubeProxyConfig, "-work-dir": cfg.workDir,
	} {
		if value == "" {
			return cfg, fmt.Errorf("%s is required", name)
		}
	}
	var err error
	if cfg.sizes, err = parseSizes(sizes); err != nil {
		return cfg, err
	}
	if cfg.changes < 1 || cfg.endpointsPerService < 1 {
		return cfg, fmt.Errorf("-changes and -endpoints must be positive")
	}
	for _, size := range cfg.sizes {
		if size < cfg.changes {
			return cfg, fmt.Errorf("each size must be at least -changes (%d): each change goes to another Service", cfg.changes)
		}
	}
	cfg.workDir, err = filepath.Abs(cfg.workDir)
	return cfg, err
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, field := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-sizes: %q is not a positive count", field)
		}
		if len(sizes) > 0 && n <= sizes[len(sizes)-1] {
			return nil, fmt.Errorf("-sizes must ascend: Services are only ever added")
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
