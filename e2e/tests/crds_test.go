package tests

// Ferry's CRDs against the real API server: they apply, valid objects are
// accepted, and invalid ones are rejected with a message that names the field.

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func crdDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "crds")
}

// installCRDs applies crds/ and waits until every Ferry CRD is Established.
func installCRDs(t *testing.T) {
	t.Helper()
	kubectl(t, "apply", "--server-side", "--force-conflicts", "-f", crdDir())
	kubectl(t, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/apps.ferry.dev", "crd/autoscalers.ferry.dev", "crd/loadbalancerpools.ferry.dev")
}

func TestCRDsAcceptValidObjects(t *testing.T) {
	installCRDs(t)
	ns := namespace(t)
	applyYAML(t, ns, `
apiVersion: ferry.dev/v1alpha1
kind: App
metadata: {name: web}
spec:
  replicas: 0
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: `+WebImageV1+`, imagePullPolicy: IfNotPresent}]
---
apiVersion: ferry.dev/v1alpha1
kind: Autoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: ferry.dev/v1alpha1, kind: App, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
  - type: Connections
    connections: {service: web, targetPerReplica: "50"}
`)
	pool := `
apiVersion: ferry.dev/v1alpha1
kind: LoadBalancerPool
metadata: {name: e2e-valid-pool}
spec:
  addresses: ["192.0.2.0/28", "198.51.100.10-198.51.100.20", "2001:db8::/120"]
`
	applyYAML(t, "", pool)
	t.Cleanup(func() { deleteYAML(t, "", pool) })
	out := kubectl(t, "get", "lbpool", "e2e-valid-pool", "-o", "jsonpath={.spec.autoAssign}")
	if out != "true" {
		t.Errorf("autoAssign defaults to true, got %q", out)
	}
}

func TestCRDsRejectInvalidObjectsNamingTheField(t *testing.T) {
	installCRDs(t)
	ns := namespace(t)
	cases := []struct {
		name, manifest string
		wantInMessage  []string
	}{
		{
			name: "negative replicas",
			manifest: `
apiVersion: ferry.dev/v1alpha1
kind: App
metadata: {name: negative}
spec:
  replicas: -1
  template: {metadata: {labels: {app: x}}, spec: {containers: [{name: x, image: x}]}}
`,
			wantInMessage: []string{"spec.replicas"},
		},
		{
			name: "surge and unavailable both zero",
			manifest: `
apiVersion: ferry.dev/v1alpha1
kind: App
metadata: {name: stuck}
spec:
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: "0%"}}
  template: {metadata: {labels: {app: x}}, spec: {containers: [{name: x, image: x}]}}
`,
			wantInMessage: []string{"maxSurge", "maxUnavailable"},
		},
		{
			name: "min above max replicas",
			manifest: `
apiVersion: ferry.dev/v1alpha1
kind: Autoscaler
metadata: {name: inverted}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 5
  maxReplicas: 2
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
`,
			wantInMessage: []string{"spec.minReplicas"},
		},
		{
			name: "unknown metric type",
			manifest: `
apiVersion: ferry.dev/v1alpha1
kind: Autoscaler
metadata: {name: unknown-metric}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 2
  metrics: [{type: Pods}]
`,
			wantInMessage: []string{"spec.metrics[0].type"},
		},
		{
			name: "pool with a bad CIDR",
			manifest: `
apiVersion: ferry.dev/v1alpha1
kind: LoadBalancerPool
metadata: {name: e2e-bad-pool}
spec:
  addresses: ["192.0.2.0/33"]
`,
			wantInMessage: []string{"spec.addresses", "CIDR"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kubectlStdin(t, tc.manifest, "apply", "-n", ns, "-f", "-")
			if err == nil {
				t.Fatalf("the API server accepted an invalid object:\n%s", tc.manifest)
			}
			for _, want := range tc.wantInMessage {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("rejection does not name %q: %v", want, err)
				}
			}
		})
	}
}

func TestExplainShowsFieldDocs(t *testing.T) {
	installCRDs(t)
	// The OpenAPI document the API server publishes lags CRD creation by a moment.
	eventually(t, 30*time.Second, func() error {
		out, err := kubectlStdin(t, "", "explain", "app.spec.replicas")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "pods") {
			return fmt.Errorf("kubectl explain app.spec.replicas shows no doc text:\n%s", out)
		}
		return nil
	})
}
