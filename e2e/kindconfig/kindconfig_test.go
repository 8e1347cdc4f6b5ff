// Package kindconfig checks e2e/kind/cluster.yaml without Docker: it is decoded with kind's
// own v1alpha4 types, the way `kind create cluster --config` decodes it, so a field kind
// does not know fails here instead of on a CI runner.
package kindconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

func load(t *testing.T) v1alpha4.Cluster {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "kind", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// As kind's config loader (pkg/internal/apis/config/encoding): yaml.v3, known fields only.
	var c v1alpha4.Cluster
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("kind cannot decode e2e/kind/cluster.yaml: %v", err)
	}
	v1alpha4.SetDefaultsCluster(&c)
	return c
}

func TestClusterConfig(t *testing.T) {
	c := load(t)
	if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Errorf("kind %q apiVersion %q, want Cluster kind.x-k8s.io/v1alpha4", c.Kind, c.APIVersion)
	}
	// "none": kind installs no kube-proxy, so Ferry is the only service proxy.
	if c.Networking.KubeProxyMode != v1alpha4.ProxyMode("none") {
		t.Errorf("networking.kubeProxyMode %q, want none", c.Networking.KubeProxyMode)
	}
	roles := map[v1alpha4.NodeRole]int{}
	for _, n := range c.Nodes {
		roles[n.Role]++
	}
	if len(c.Nodes) != 3 || roles[v1alpha4.ControlPlaneRole] != 1 || roles[v1alpha4.WorkerRole] != 2 {
		t.Errorf("nodes %v, want 1 control-plane and 2 workers", roles)
	}
	// The local cluster's address plan (e2e/cluster/lib/common.sh), which e2e/kind/run routes.
	if c.Networking.PodSubnet != "10.244.0.0/16" || c.Networking.ServiceSubnet != "10.96.0.0/12" {
		t.Errorf("subnets pod %q service %q, want 10.244.0.0/16 and 10.96.0.0/12",
			c.Networking.PodSubnet, c.Networking.ServiceSubnet)
	}
}
