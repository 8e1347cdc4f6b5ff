# shellcheck shell=bash
# Per-node processes: containerd, kubelet and the service proxy, each run in
# the node's network namespace (host mount namespace) and inside the node's
# own cgroup subtree /ferry-nodeN (cgroup v1: every mounted hierarchy), so
# that `down` can find and stop everything a node started, containers included.

# cgroup hierarchies to create node subtrees in (v1 hierarchies only).
cgroup_hierarchies() {
	local d
	for d in /sys/fs/cgroup/*/; do
		d=${d%/}
		[[ -f $d/cgroup.procs && ${d##*/} != unified ]] && echo "$d"
	done
}

# cgroup_setup N: /ferry-nodeN (kubelet's cgroupRoot) and /ferry-nodeN/system
# (containerd, kubelet, proxy) in every hierarchy.
cgroup_setup() {
	local cg h
	cg=$(node_ns "$1")
	while read -r h; do
		mkdir -p "$h/$cg/system"
		if [[ -f $h/cpuset.cpus ]]; then
			local d
			for d in "$h/$cg" "$h/$cg/system"; do
				cat "$h/cpuset.cpus" >"$d/cpuset.cpus"
				cat "$h/cpuset.mems" >"$d/cpuset.mems"
			done
		fi
	done < <(cgroup_hierarchies)
}

# cgroup_pids N: every process in node N's cgroup subtree.
cgroup_pids() {
	local root
	root="/sys/fs/cgroup/pids/$(node_ns "$1")"
	[[ -d $root ]] || return 0
	find "$root" -name cgroup.procs -exec cat {} + 2>/dev/null
}

# cgroup_kill N: SIGKILL everything left in node N's subtree (pods' processes,
# containerd shims), then remove the subtree's directories.
cgroup_kill() {
	local n=$1 i pids h
	for ((i = 0; i < 50; i++)); do
		pids=$(cgroup_pids "$n")
		[[ -n $pids ]] || break
		# shellcheck disable=SC2086 # word splitting intended
		kill -KILL $pids 2>/dev/null || true
		sleep 0.1
	done
	[[ -z $(cgroup_pids "$n") ]] || warn "processes left in cgroup $(node_ns "$n"): $(cgroup_pids "$n" | tr '\n' ' ')"
	for h in /sys/fs/cgroup/*; do # all hierarchies: runc also creates dirs in the v2 "unified" one
		[[ -d $h/$(node_ns "$n") ]] || continue
		find "$h/$(node_ns "$n")" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[[ ! -d $h/$(node_ns "$n") ]] || warn "could not remove cgroup $h/$(node_ns "$n")"
	done
}

# start_in_node N NAME CMD...: start_bg in node N's netns and system cgroup.
start_in_node() {
	local n=$1 name=$2
	shift 2
	start_bg "$name" "$CLUSTER_DIR/lib/node-exec" "$(node_ns "$n")" "$@"
}

node_dir() { echo "$WORK/$(node_name "$1")"; }
node_sock() { echo "$(node_dir "$1")/containerd.sock"; }

write_containerd_config() {
	local n=$1 d
	d=$(node_dir "$n")
	mkdir -p "$d/containerd" "$d/cni/net.d" "$d/cni/ipam"
	cat >"$d/containerd/config.toml" <<TOML
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "$(node_sock "$n")"

[ttrpc]
  address = "$(node_sock "$n").ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$d/cni/net.d"
    max_conf_num = 1
TOML
	cat >"$d/cni/net.d/10-ferry.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$(node_ns "$n")",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$d/cni/ipam",
        "ranges": [[{"subnet": "$(node_pod_cidr "$n")"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
JSON
}

start_containerd() {
	local n=$1 sock i
	sock=$(node_sock "$n")
	write_containerd_config "$n"
	start_in_node "$n" "containerd-$(node_name "$n")" containerd --config "$(node_dir "$n")/containerd/config.toml"
	wait_ready "containerd-$(node_name "$n")" 60 ctr -a "$sock" version || return 1
	for i in "$IMAGE_DIR"/*.tar; do
		ctr -n k8s.io -a "$sock" images import "$i" >/dev/null ||
			{ warn "importing $i into $(node_name "$n") failed"; return 1; }
	done
}

write_kubelet_config() {
	local n=$1 d name pki=$WORK/pki
	d=$(node_dir "$n")
	name=$(node_name "$n")
	mkdir -p "$d/kubelet"
	printf '# ferry e2e: pods get no upstream DNS\noptions ndots:1\n' >"$d/resolv.conf"
	cat >"$d/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip "$n")
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $pki/kubelet-$name-serving.crt
tlsPrivateKeyFile: $pki/kubelet-$name-serving.key
containerRuntimeEndpoint: unix://$(node_sock "$n")
cgroupDriver: cgroupfs
cgroupRoot: /$(node_ns "$n")
cgroupsPerQOS: true
failSwapOn: false
failCgroupV1: false
clusterDNS: [$CLUSTER_DNS]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $d/resolv.conf
hairpinMode: hairpin-veth
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 10s
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
volumeStatsAggPeriod: 1m
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
YAML
}

# register_node N: creates the Node object before its kubelet starts, so that
# node N gets pod CIDR 10.244.N.0/24 (the controller-manager's allocator would
# otherwise hand out CIDRs in registration order, starting at 10.244.0.0/24).
register_node() {
	local n=$1
	"$BIN_DIR/kubectl" --kubeconfig "$WORK/kubeconfig" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Node
metadata:
  name: $(node_name "$n")
  labels:
    kubernetes.io/hostname: $(node_name "$n")
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    ferry.dev/e2e-node: "$n"
spec:
  podCIDR: $(node_pod_cidr "$n")
  podCIDRs: [$(node_pod_cidr "$n")]
YAML
}

# shared_root_dir DIR: DIR bind-mounted on itself with shared propagation, as kubelet wants
# its root dir. kubelet would do it itself at start, but concurrently with creating its
# pod-resources socket in that dir; when the mount lands between the socket's creation and
# its rename into place, the rename fails with EXDEV and kubelet exits (seen under load).
shared_root_dir() {
	mountpoint -q "$1" || mount --bind "$1" "$1"
	mount --make-rshared "$1"
}

start_kubelet() {
	local n=$1 name
	name=$(node_name "$n")
	write_kubelet_config "$n"
	shared_root_dir "$(node_dir "$n")/kubelet"
	start_in_node "$n" "kubelet-$name" "$BIN_DIR/kubelet" \
		--config "$(node_dir "$n")/kubelet.yaml" \
		--kubeconfig "$WORK/pki/kubelet-$name.kubeconfig" \
		--root-dir "$(node_dir "$n")/kubelet" \
		--cert-dir "$(node_dir "$n")/kubelet/pki" \
		--hostname-override "$name" \
		--node-ip "$(node_ip "$n")" \
		--node-labels "ferry.dev/e2e-node=$n" \
		--v 1
	wait_ready "kubelet-$name" 60 in_node "$n" curl -fsS --max-time 2 http://127.0.0.1:10248/healthz
}

write_kube_proxy_config() {
	local n=$1 d
	d=$(node_dir "$n")
	cat >"$d/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: $WORK/pki/kube-proxy.kubeconfig
hostnameOverride: $(node_name "$n")
clusterCIDR: $POD_CIDR
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
YAML
}

# start_proxy N MODE: MODE is none, kube-proxy or a command line run with
# bash -c in node N's namespace with NODE_NAME, NODE_IP, NODE_INDEX, POD_CIDR
# (the node's), CLUSTER_CIDR, SERVICE_CIDR and KUBECONFIG (identity
# system:kube-proxy) in its environment.
start_proxy() {
	local n=$1 mode=$2 name
	name=$(node_name "$n")
	case $mode in
	none) return 0 ;;
	kube-proxy)
		write_kube_proxy_config "$n"
		start_in_node "$n" "proxy-$name" "$BIN_DIR/kube-proxy" --config "$(node_dir "$n")/kube-proxy.yaml" --v 1
		wait_ready "proxy-$name" 60 in_node "$n" curl -fsS --max-time 2 http://127.0.0.1:10256/healthz
		;;
	*)
		start_in_node "$n" "proxy-$name" env \
			NODE_NAME="$name" NODE_IP="$(node_ip "$n")" NODE_INDEX="$n" \
			POD_CIDR="$(node_pod_cidr "$n")" CLUSTER_CIDR="$POD_CIDR" SERVICE_CIDR="$SERVICE_CIDR" \
			KUBECONFIG="$WORK/pki/kube-proxy.kubeconfig" \
			bash -c "$mode"
		sleep 2
		alive "proxy-$name" || { warn "proxy command exited on $name"; log_tail "proxy-$name"; return 1; }
		;;
	esac
}
