package chart

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	sigsyaml "sigs.k8s.io/yaml"
)

// variants are value sets every structural test renders: the defaults and the other
// branches of the templates.
var variants = map[string][]string{
	"defaults": nil,
	"nftables, l2, monitoring, direct API server": {
		"proxy.config.mode=nftables", "proxy.config.loadBalancerAnnouncement=l2",
		"metrics.serviceMonitor.enabled=true", "k8sServiceHost=192.168.230.1",
		"proxy.config.nodePortAddresses={192.168.230.0/24,fd00::/64}",
		"proxy.config.clusterCIDR=10.244.0.0/16\\,fd00:10:244::/56",
	},
	"proxy only, no hook, no host mounts": {
		"operator.enabled=false", "cleanupOnUninstall.enabled=false", "proxy.hostSysctls=false",
		"grafanaDashboard.enabled=false",
	},
	"operator only": {"proxy.enabled=false", "operator.leaderElection.enabled=false", "operator.replicas=1"},
}

// The chart's copy of the CRDs must be byte-for-byte crds/ (helm/sync-crds updates it).
func TestCRDCopyMatchesGeneratedCRDs(t *testing.T) {
	src := yamlFiles(t, filepath.Join(repoRoot, "crds"))
	dst := yamlFiles(t, filepath.Join(chartDir, "crds"))
	if len(src) == 0 {
		t.Fatal("crds/ holds no YAML")
	}
	if !reflect.DeepEqual(keys(src), keys(dst)) {
		t.Fatalf("helm/ferry/crds has %v, crds/ has %v: run helm/sync-crds", keys(dst), keys(src))
	}
	for name, want := range src {
		if !bytes.Equal(dst[name], want) {
			t.Errorf("helm/ferry/crds/%s differs from crds/%s: run helm/sync-crds", name, name)
		}
	}
}

func yamlFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	return files
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestLint(t *testing.T) {
	for name, sets := range variants {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", chartDir, "--strict", "--kube-version", kubeVersion}
			for _, s := range sets {
				args = append(args, "--set", s)
			}
			if out, err := runHelm(t, args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// Every rendered object decodes strictly into its Kubernetes 1.34 Go type: this is the
// offline schema check (the API server's own check is in dryrun_test.go).
func TestRenderedObjectsAreValidAPIObjects(t *testing.T) {
	for name, sets := range variants {
		t.Run(name, func(t *testing.T) {
			objs := render(t, sets...)
			if len(objs) == 0 {
				t.Fatal("nothing rendered")
			}
			for _, o := range objs {
				if o.GetAPIVersion() == "monitoring.coreos.com/v1" {
					continue // prometheus-operator's type; checked in TestServiceMonitorOnlyWhenEnabled
				}
				gvk := o.GroupVersionKind()
				obj, err := strictScheme.New(gvk)
				if err != nil {
					t.Errorf("%s/%s: unknown kind %v", o.GetKind(), o.GetName(), gvk)
					continue
				}
				if err := decodeStrict(o, obj); err != nil {
					t.Errorf("%s/%s: %v", o.GetKind(), o.GetName(), err)
				}
				if ns := o.GetNamespace(); ns != "" && ns != "kube-system" {
					t.Errorf("%s/%s is in namespace %q, not the release's", o.GetKind(), o.GetName(), ns)
				}
			}
		})
	}
}

// A bad value fails rendering with a message that names the value's path.
func TestSchemaRejectsBadValuesNamingTheField(t *testing.T) {
	cases := []struct {
		name, values, wantField string
	}{
		{"unknown mode", "proxy:\n  config:\n    mode: iptables\n", "/proxy/config/mode"},
		{"wrong type", "operator:\n  replicas: two\n", "/operator/replicas"},
		{"duration without unit", "proxy:\n  config:\n    syncPeriod: 30\n", "/proxy/config/syncPeriod"},
		{"malformed duration", "proxy:\n  config:\n    minSyncPeriod: 1 second\n", "/proxy/config/minSyncPeriod"},
		{"unknown scheduler", "proxy:\n  config:\n    ipvs:\n      scheduler: fastest\n", "/proxy/config/ipvs/scheduler"},
		{"address, not a CIDR", "proxy:\n  config:\n    nodePortAddresses: [192.168.1.10]\n", "/proxy/config/nodePortAddresses/0"},
		{"typo in a key", "proxy:\n  config:\n    syncPeriods: 30s\n", "syncPeriods"},
		{"unknown top-level key", "operater:\n  replicas: 3\n", "operater"},
		{"bad pull policy", "proxy:\n  image:\n    pullPolicy: Sometimes\n", "/proxy/image/pullPolicy"},
		{"bad bind address", "proxy:\n  config:\n    healthzBindAddress: localhost\n", "/proxy/config/healthzBindAddress"},
		{"bad lease duration", "proxy:\n  config:\n    l2:\n      leaseDuration: 6\n", "/proxy/config/l2/leaseDuration"},
		{"interface name with a slash", "proxy:\n  config:\n    l2:\n      interface: eth0/1\n", "/proxy/config/l2/interface"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Not under t.TempDir(): its path holds the test name, and helm -f splits on commas.
			dir, err := os.MkdirTemp("", "ferry-values-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			f := filepath.Join(dir, "values.yaml")
			if err := os.WriteFile(f, []byte(c.values), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range [][]string{
				{"template", "ferry", chartDir, "--kube-version", kubeVersion, "-f", f},
				{"lint", chartDir, "--kube-version", kubeVersion, "-f", f},
			} {
				out, err := runHelm(t, cmd...)
				if err == nil {
					t.Fatalf("helm %s accepted\n%s", cmd[0], c.values)
				}
				if msg := err.Error() + out; !strings.Contains(msg, c.wantField) {
					t.Errorf("helm %s: message does not name %q:\n%s", cmd[0], c.wantField, msg)
				}
			}
		})
	}
}

func TestProxyDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	typed(t, render(t).get(t, "DaemonSet", "ferry-proxy"), &ds)
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v, dnsPolicy %q: want true, ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	if want := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}; !reflect.DeepEqual(pod.Tolerations, want) {
		t.Errorf("tolerations %+v, want %+v (every taint)", pod.Tolerations, want)
	}
	if s := ds.Spec.UpdateStrategy; s.Type != appsv1.RollingUpdateDaemonSetStrategyType ||
		s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("updateStrategy %+v, want RollingUpdate with maxUnavailable 1", s)
	}
	c := container(t, pod.Containers, "proxy")
	if !slices.Contains(c.Args, "--config=/etc/ferry/proxy.yaml") {
		t.Errorf("args %v lack --config=/etc/ferry/proxy.yaml", c.Args)
	}
	if e := env(c, "NODE_NAME"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
		e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("NODE_NAME must come from spec.nodeName: %+v", e)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || sc.Privileged != nil && *sc.Privileged {
		t.Fatalf("securityContext %+v", sc)
	}
	if !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!reflect.DeepEqual(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}) {
		t.Errorf("capabilities %+v: want drop ALL, add NET_ADMIN only", sc.Capabilities)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root filesystem is writable")
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if m, ok := mounts["/etc/ferry"]; !ok || volume(t, pod, m.Name).ConfigMap == nil {
		t.Errorf("/etc/ferry must be the ConfigMap: %+v", m)
	}
	// The only host path is /proc/sys/net (sysctls): Ferry uses no iptables lock, and the
	// kernel loads modules with the node's own modprobe, so /lib/modules is not needed.
	for _, v := range pod.Volumes {
		if v.HostPath != nil && v.HostPath.Path != "/proc/sys/net" {
			t.Errorf("volume %s mounts the node's %s: the proxy does not use it", v.Name, v.HostPath.Path)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["metrics"] != 10249 || ports["healthz"] != 10256 {
		t.Errorf("ports %v, want metrics 10249 and healthz 10256", ports)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz on port healthz", p)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want a CPU request and a memory limit", c.Resources)
	}
}

func TestProxyGetsNetRawOnlyForL2Announcement(t *testing.T) {
	var ds appsv1.DaemonSet
	typed(t, render(t, "proxy.config.loadBalancerAnnouncement=l2").get(t, "DaemonSet", "ferry-proxy"), &ds)
	proxy := container(t, ds.Spec.Template.Spec.Containers, "proxy")
	caps := proxy.SecurityContext.Capabilities.Add
	if !reflect.DeepEqual(caps, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) {
		t.Errorf("l2 announcement: capabilities %v, want NET_ADMIN and NET_RAW", caps)
	}
	// The heartbeat Leases go to the pod's namespace, where the Role grants them.
	found := false
	for _, e := range proxy.Env {
		if e.Name == "POD_NAMESPACE" {
			found = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
		}
	}
	if !found {
		t.Errorf("l2 announcement: no POD_NAMESPACE from metadata.namespace in %+v", proxy.Env)
	}
}

// The ConfigMap is the contract with `ferry-proxy --config`: exactly these fields.
func TestProxyConfigFile(t *testing.T) {
	cases := []struct {
		name string
		sets []string
		want map[string]any
	}{
		{"defaults", nil, map[string]any{
			"mode":                     "ipvs",
			"ipvs":                     map[string]any{"scheduler": "rr", "gracefulTerminationSeconds": 30.0},
			"minSyncPeriod":            "1s",
			"syncPeriod":               "30s",
			"nodePortAddresses":        []any{},
			"clusterCIDR":              "",
			"metricsBindAddress":       "0.0.0.0:10249",
			"healthzBindAddress":       "0.0.0.0:10256",
			"loadBalancerAnnouncement": "none",
			"l2":                       map[string]any{"interface": "", "leaseDuration": "6s"},
			"sysctlRoot":               "/host/proc/sys",
			"cleanupOnExit":            false,
		}},
		{"overrides", []string{
			"proxy.config.mode=nftables", "proxy.config.ipvs.scheduler=mh",
			"proxy.config.ipvs.gracefulTerminationSeconds=0", "proxy.config.minSyncPeriod=250ms",
			"proxy.config.syncPeriod=1m30s", "proxy.config.nodePortAddresses={192.168.230.0/24}",
			"proxy.config.clusterCIDR=10.244.0.0/16", "proxy.config.metricsBindAddress=127.0.0.1:10249",
			"proxy.config.healthzBindAddress=[::]:10256", "proxy.config.loadBalancerAnnouncement=l2",
			"proxy.config.l2.interface=eth1", "proxy.config.l2.leaseDuration=15s",
			"proxy.hostSysctls=false",
		}, map[string]any{
			"mode":                     "nftables",
			"ipvs":                     map[string]any{"scheduler": "mh", "gracefulTerminationSeconds": 0.0},
			"minSyncPeriod":            "250ms",
			"syncPeriod":               "1m30s",
			"nodePortAddresses":        []any{"192.168.230.0/24"},
			"clusterCIDR":              "10.244.0.0/16",
			"metricsBindAddress":       "127.0.0.1:10249",
			"healthzBindAddress":       "[::]:10256",
			"loadBalancerAnnouncement": "l2",
			"l2":                       map[string]any{"interface": "eth1", "leaseDuration": "15s"},
			"sysctlRoot":               "/proc/sys",
			"cleanupOnExit":            false,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs := render(t, c.sets...)
			got := proxyConfig(t, objs)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("proxy.yaml:\n got %v\nwant %v", got, c.want)
			}
			// The uninstall hook writes the same file with only cleanupOnExit flipped.
			hook := hookConfig(t, objs)
			c.want["cleanupOnExit"] = true
			if !reflect.DeepEqual(hook, c.want) {
				t.Errorf("hook's proxy.yaml:\n got %v\nwant %v", hook, c.want)
			}
		})
	}
}

func proxyConfig(t *testing.T, objs rendered) map[string]any {
	t.Helper()
	var cm corev1.ConfigMap
	typed(t, objs.get(t, "ConfigMap", "ferry-proxy"), &cm)
	return parseYAML(t, cm.Data["proxy.yaml"])
}

// hookConfig returns the proxy.yaml that the uninstall hook's first step patches in.
func hookConfig(t *testing.T, objs rendered) map[string]any {
	t.Helper()
	var job batchv1.Job
	typed(t, objs.get(t, "Job", "ferry-proxy-cleanup"), &job)
	c := container(t, job.Spec.Template.Spec.InitContainers, "set-cleanup-on-exit")
	for _, a := range c.Args {
		if p, ok := strings.CutPrefix(a, "--patch="); ok {
			var patch struct {
				Data map[string]string `json:"data"`
			}
			if err := json.Unmarshal([]byte(p), &patch); err != nil {
				t.Fatalf("hook patch %q: %v", p, err)
			}
			return parseYAML(t, patch.Data["proxy.yaml"])
		}
	}
	t.Fatalf("hook step has no --patch: %v", c.Args)
	return nil
}

func parseYAML(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := sigsyaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	return m
}

// The hook rolls exactly the release's DaemonSet, in order: config, restart, wait.
func TestUninstallHook(t *testing.T) {
	objs := render(t)
	var job batchv1.Job
	o := objs.get(t, "Job", "ferry-proxy-cleanup")
	typed(t, o, &job)
	if o.GetAnnotations()["helm.sh/hook"] != "pre-delete" {
		t.Errorf("annotations %v: want a pre-delete hook", o.GetAnnotations())
	}
	pod := job.Spec.Template.Spec
	var steps []string
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		steps = append(steps, strings.Join(c.Args[:2], " "))
	}
	want := []string{"patch configmap/ferry-proxy", "patch daemonset/ferry-proxy", "rollout status"}
	if !reflect.DeepEqual(steps, want) {
		t.Errorf("hook steps %q, want %q", steps, want)
	}
	var role rbacv1.Role
	typed(t, objs.get(t, "Role", "ferry-proxy-cleanup"), &role)
	for _, r := range role.Rules {
		if !reflect.DeepEqual(r.ResourceNames, []string{"ferry-proxy"}) {
			t.Errorf("hook rule %+v may touch more than ferry-proxy", r)
		}
	}
	if render(t, "cleanupOnUninstall.enabled=false").has("Job", "ferry-proxy-cleanup") {
		t.Error("cleanupOnUninstall.enabled=false still renders the hook")
	}
}

// rule is one (API group, resource, verb) a role grants.
type rule struct{ group, resource, verb string }

func grants(rules []rbacv1.PolicyRule) []rule {
	var rs []rule
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					rs = append(rs, rule{g, res, v})
				}
			}
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		return a.group+"/"+a.resource+"/"+a.verb < b.group+"/"+b.resource+"/"+b.verb
	})
	return rs
}

func expand(groups, resources, verbs []string) []rule {
	return grants([]rbacv1.PolicyRule{{APIGroups: groups, Resources: resources, Verbs: verbs}})
}

func TestRBACIsLeastPrivilege(t *testing.T) {
	objs := render(t)
	read := []string{"get", "list", "watch"}
	cases := []struct {
		role string
		want []rule
	}{
		{"ferry-proxy", slices.Concat(
			expand([]string{""}, []string{"services", "nodes"}, read),
			expand([]string{"discovery.k8s.io"}, []string{"endpointslices"}, read),
			expand([]string{"", "events.k8s.io"}, []string{"events"}, []string{"create", "patch"}),
		)},
		{"ferry-operator", slices.Concat(
			expand([]string{"ferry.dev"}, []string{"apps", "autoscalers", "loadbalancerpools"}, []string{"get", "list", "watch", "update", "patch"}),
			expand([]string{"ferry.dev"}, []string{"apps/status", "autoscalers/status", "loadbalancerpools/status", "apps/scale"}, []string{"get", "update", "patch"}),
			expand([]string{"ferry.dev"}, []string{"apps/finalizers"}, []string{"update"}),
			expand([]string{""}, []string{"pods"}, []string{"get", "list", "watch", "create", "delete", "patch"}),
			expand([]string{""}, []string{"services"}, []string{"get", "list", "watch", "create", "update", "patch", "delete"}),
			expand([]string{"apps"}, []string{"controllerrevisions"}, []string{"get", "list", "watch", "create", "update", "patch", "delete"}),
			expand([]string{""}, []string{"services/status"}, []string{"get", "update", "patch"}),
			expand([]string{"apps"}, []string{"deployments/scale", "statefulsets/scale"}, []string{"get", "update", "patch"}),
			expand([]string{"metrics.k8s.io"}, []string{"pods"}, []string{"get", "list"}),
			expand([]string{""}, []string{"namespaces"}, read),
			expand([]string{"", "events.k8s.io"}, []string{"events"}, []string{"create", "patch"}),
		)},
	}
	for _, c := range cases {
		var cr rbacv1.ClusterRole
		typed(t, objs.get(t, "ClusterRole", c.role), &cr)
		if got, want := grants(cr.Rules), sortRules(c.want); !reflect.DeepEqual(got, want) {
			t.Errorf("ClusterRole %s grants\n %v\nwant exactly\n %v", c.role, got, want)
		}
	}
	// Leases only in the release namespace, through a Role.
	var role rbacv1.Role
	o := objs.get(t, "Role", "ferry-operator-leader-election")
	typed(t, o, &role)
	if got := grants(role.Rules); !reflect.DeepEqual(got, expand([]string{"coordination.k8s.io"}, []string{"leases"},
		[]string{"get", "list", "watch", "create", "update", "patch"})) || o.GetNamespace() != "kube-system" {
		t.Errorf("leader election Role in %q grants %v", o.GetNamespace(), got)
	}
	// The proxy's heartbeat Leases: a Role in the release namespace, only for l2 announcement.
	if objs.has("Role", "ferry-proxy-announcer") {
		t.Errorf("a Role ferry-proxy-announcer without l2 announcement")
	}
	l2 := render(t, "proxy.config.loadBalancerAnnouncement=l2")
	o = l2.get(t, "Role", "ferry-proxy-announcer")
	typed(t, o, &role)
	if got := grants(role.Rules); !reflect.DeepEqual(got, expand([]string{"coordination.k8s.io"}, []string{"leases"},
		[]string{"get", "list", "watch", "create", "patch", "delete"})) || o.GetNamespace() != "kube-system" {
		t.Errorf("announcer Role in %q grants %v", o.GetNamespace(), got)
	}
	var binding rbacv1.RoleBinding
	typed(t, l2.get(t, "RoleBinding", "ferry-proxy-announcer"), &binding)
	if binding.RoleRef.Name != "ferry-proxy-announcer" || len(binding.Subjects) != 1 || binding.Subjects[0].Name != "ferry-proxy" {
		t.Errorf("announcer RoleBinding %+v", binding)
	}
	// Nothing anywhere grants a wildcard or Secrets.
	for _, o := range objs {
		if k := o.GetKind(); k != "ClusterRole" && k != "Role" {
			continue
		}
		var r rbacv1.ClusterRole // same rules field as Role
		if err := sigsyaml.Unmarshal(o.raw, &r); err != nil {
			t.Fatal(err)
		}
		for _, g := range grants(r.Rules) {
			if g.group == "*" || g.resource == "*" || g.verb == "*" || g.resource == "secrets" {
				t.Errorf("%s %s grants %+v", o.GetKind(), o.GetName(), g)
			}
		}
	}
}

func sortRules(rs []rule) []rule {
	var prs []rbacv1.PolicyRule
	for _, r := range rs {
		prs = append(prs, rbacv1.PolicyRule{APIGroups: []string{r.group}, Resources: []string{r.resource}, Verbs: []string{r.verb}})
	}
	return grants(prs)
}

func TestOperatorDeployment(t *testing.T) {
	objs := render(t)
	var d appsv1.Deployment
	typed(t, objs.get(t, "Deployment", "ferry-operator"), &d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	c := container(t, pod.Containers, "operator")
	if !slices.Contains(c.Args, "--leader-elect=true") || !slices.Contains(c.Args, "--metrics-bind-address=0.0.0.0:8080") {
		t.Errorf("args %v: want --leader-elect=true and --metrics-bind-address=0.0.0.0:8080", c.Args)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("operator pod may run as root")
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want read-only root, no privilege escalation", sc)
	}
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %s: %+v, want GET %s on the metrics port", name, p, name)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v, want metrics 8080", c.Ports)
	}
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Cpu().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and limits", r)
	}
	var pdb policyv1.PodDisruptionBudget
	typed(t, objs.get(t, "PodDisruptionBudget", "ferry-operator"), &pdb)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 ||
		!reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("PDB %+v: want minAvailable 1 over the operator's pods", pdb.Spec)
	}
}

// The operator scrapes the proxies' connection counters where they serve them: the proxy
// pods (host network) of this release, at the port of proxy.config.metricsBindAddress.
func TestOperatorFindsTheProxiesMetrics(t *testing.T) {
	for port, sets := range map[string][]string{
		"10249": nil,
		"19249": {"proxy.config.metricsBindAddress=0.0.0.0:19249"},
	} {
		var d appsv1.Deployment
		typed(t, render(t, sets...).get(t, "Deployment", "ferry-operator"), &d)
		args := container(t, d.Spec.Template.Spec.Containers, "operator").Args
		for _, want := range []string{
			"--autoscaler-proxy-namespace=kube-system",
			"--autoscaler-proxy-selector=app.kubernetes.io/name=ferry-proxy,app.kubernetes.io/instance=ferry",
			"--autoscaler-proxy-metrics-port=" + port,
		} {
			if !slices.Contains(args, want) {
				t.Errorf("with %v: args %v lack %s", sets, args, want)
			}
		}
	}
}

func TestServiceMonitorOnlyWhenEnabled(t *testing.T) {
	if render(t).has("ServiceMonitor", "ferry") {
		t.Error("ServiceMonitor rendered by default")
	}
	objs := render(t, "metrics.serviceMonitor.enabled=true")
	sm := objs.get(t, "ServiceMonitor", "ferry")
	sel := stringMap(sm.Object, "spec", "selector", "matchLabels")
	// It must select both metrics Services, whose ports are all named "metrics".
	for _, name := range []string{"ferry-proxy-metrics", "ferry-operator-metrics"} {
		var svc corev1.Service
		typed(t, objs.get(t, "Service", name), &svc)
		for k, v := range sel {
			if svc.Labels[k] != v {
				t.Errorf("ServiceMonitor selector %v misses Service %s (labels %v)", sel, name, svc.Labels)
			}
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" {
			t.Errorf("Service %s ports %+v: want one named metrics", name, svc.Spec.Ports)
		}
	}
}

// stringMap returns the map of strings at path in obj (empty if there is none).
func stringMap(obj map[string]any, path ...string) map[string]string {
	m, _, _ := unstructured.NestedStringMap(obj, path...)
	return m
}

// The dashboard is valid JSON and charts each metric family the chart promises.
func TestGrafanaDashboard(t *testing.T) {
	var cm corev1.ConfigMap
	typed(t, render(t).get(t, "ConfigMap", "ferry-dashboard"), &cm)
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["ferry.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, metric := range []string{
		"ferry_proxy_network_programming_duration_seconds_bucket",
		"ferry_proxy_sync_duration_seconds_bucket",
		"ferry_operator_reconcile_total",
		"ferry_operator_reconcile_errors_total",
		"ferry_operator_reconcile_duration_seconds_bucket",
		"ferry_autoscaler_decisions_total",
		"ferry_proxy_service_connections_total",
	} {
		if !strings.Contains(all, metric) {
			t.Errorf("no panel queries %s", metric)
		}
	}
	if !strings.Contains(all, "histogram_quantile(0.5,") || !strings.Contains(all, "histogram_quantile(0.99,") {
		t.Error("latency panels need p50 and p99")
	}
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func volume(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %q", name)
	return corev1.Volume{}
}
