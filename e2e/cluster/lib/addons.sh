# shellcheck shell=bash
# Cluster add-ons: CoreDNS as the kube-dns Service at $CLUSTER_DNS, and metrics-server
# behind the resource metrics API (metrics.k8s.io). Source after
# common.sh and build.sh; node.sh (node_sock) for the deploy_* functions.

COREDNS_VERSION=v1.12.1 # what kubeadm v1.34 deploys (cmd/kubeadm/app/constants)
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$COREDNS_VERSION
METRICS_SERVER_VERSION=v0.8.0 # pinned in e2e/tools/metrics-server/go.mod
METRICS_SERVER_IMAGE=registry.k8s.io/metrics-server/metrics-server:$METRICS_SERVER_VERSION
# Bump when build_tool_image changes in a way the hashed go.mod/go.sum don't show.
ADDONS_RECIPE=1

# build_tool_image NAME MODULE PACKAGE TAG: prints the path of an image (docker-archive)
# holding one binary, PACKAGE built from the Go module e2e/tools/MODULE, cached in
# $FERRY_CACHE/NAME by the module's go.mod/go.sum and $ADDONS_RECIPE. Add-ons live in
# modules of their own because in e2e/go.mod they and Kubernetes would raise each other's
# dependencies (client-go, protobuf, prometheus, ...) above what their releases were tested with.
build_tool_image() {
	local name=$1 mod=$E2E_DIR/tools/$2 pkg=$3 tag=$4 key dir tmp start
	key=$( (cd "$mod" && cat go.mod go.sum && echo "recipe=$ADDONS_RECIPE") | sha256sum | cut -c1-16)
	dir="$FERRY_CACHE/$name/$key"
	if [[ -f $dir/.complete ]]; then
		log "$name: cache hit $dir"
		echo "$dir/$name.tar"
		return 0
	fi
	GO=$(go_bin)
	remove_stale_partials "$dir"
	tmp="$dir.partial.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "building $tag into $dir (cold: ~3 min on 2 cores; log: $tmp.log)"
	start=$SECONDS
	if ! (cd "$mod" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s -w" -o "$tmp/$name" "$pkg" &&
		"$BIN_DIR/imgbuild" -bin "$tmp/$name" -tag "$tag" -out "$tmp/$name.tar") >"$tmp.log" 2>&1; then
		tail -n 40 "$tmp.log" >&2
		rm -rf "$tmp"
		die "building $name failed (full log: $tmp.log)"
	fi
	rm -f "$tmp/$name" "$tmp.log"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	touch "$dir/.complete"
	log "$name built in $((SECONDS - start))s"
	prune_cache "$FERRY_CACHE/$name"
	echo "$dir/$name.tar"
}

# build_coredns: sets COREDNS_TAR, the CoreDNS image, built from e2e/tools/coredns.
build_coredns() {
	COREDNS_TAR=$(build_tool_image coredns coredns github.com/coredns/coredns "$COREDNS_IMAGE")
}

# build_metrics_server: sets METRICS_SERVER_TAR, the metrics-server image, built from
# e2e/tools/metrics-server.
build_metrics_server() {
	METRICS_SERVER_TAR=$(build_tool_image metrics-server metrics-server \
		sigs.k8s.io/metrics-server/cmd/metrics-server "$METRICS_SERVER_IMAGE")
}

# import_image TAR NODES: imports the image into every node's containerd.
import_image() {
	local tar=$1 nodes=$2 i
	for ((i = 1; i <= nodes; i++)); do
		ctr -n k8s.io -a "$(node_sock "$i")" images import "$tar" >/dev/null ||
			{ warn "importing $tar into $(node_name "$i") failed"; return 1; }
	done
}

# deploy_dns NODES: imports the CoreDNS image on every node, applies
# lib/coredns.yaml, waits for the Deployment and checks from a pod that
# kubernetes.default resolves to the kubernetes Service. Needs a service
# proxy: CoreDNS reaches the API server, and pods reach CoreDNS, through
# ClusterIPs. Returns 1 (after showing why) if DNS does not work.
deploy_dns() {
	local nodes=$1 i
	local k=("$BIN_DIR/kubectl" --kubeconfig "$WORK/kubeconfig" -n kube-system)
	log "CoreDNS $COREDNS_VERSION as Service kube-system/kube-dns at $CLUSTER_DNS"
	import_image "$COREDNS_TAR" "$nodes" || return 1
	sed -e "s|\${COREDNS_IMAGE}|$COREDNS_IMAGE|g" -e "s|\${CLUSTER_DNS}|$CLUSTER_DNS|g" \
		-e "s|\${CLUSTER_DOMAIN}|$CLUSTER_DOMAIN|g" "$CLUSTER_DIR/lib/coredns.yaml" |
		"${k[@]}" apply -f - >/dev/null || return 1
	if ! "${k[@]}" rollout status deployment/coredns --timeout=120s >/dev/null; then
		warn "CoreDNS not ready after 120s"
		"${k[@]}" get pods -l k8s-app=kube-dns -o wide >&2 || true
		"${k[@]}" logs -l k8s-app=kube-dns --tail=20 --prefix >&2 || true
		return 1
	fi
	# The check pod runs the web image's client (`/web resolve`), which looks the
	# name up through the pod's resolv.conf, as any pod would.
	"${k[@]}" run dns-check --image="$WEB_IMAGE:v1" --image-pull-policy=Never --restart=Never >/dev/null || return 1
	local ok=0
	if "${k[@]}" wait --for=condition=Ready pod/dns-check --timeout=60s >/dev/null &&
		wait_for "kubernetes.default.svc.$CLUSTER_DOMAIN to resolve from a pod" 30 dns_resolves "${k[@]}"; then
		ok=1
	fi
	"${k[@]}" delete pod dns-check --grace-period=1 >/dev/null || true
	((ok)) || return 1
	log "cluster DNS works: kubernetes.default.svc.$CLUSTER_DOMAIN -> $KUBERNETES_SVC_IP from a pod"
}

# dns_resolves KUBECTL...: the dns-check pod resolves kubernetes.default to its ClusterIP.
dns_resolves() {
	[[ $("$@" exec dns-check -- /web resolve "kubernetes.default.svc.$CLUSTER_DOMAIN") == "$KUBERNETES_SVC_IP" ]]
}

# grant_proxy_leases: lets the nodes' proxies (identity system:kube-proxy) keep Leases in
# kube-system, as ferry-proxy's l2 announcement does for its heartbeats (the chart grants the
# same through a Role). Harmless for a proxy that takes no Leases.
grant_proxy_leases() {
	"$BIN_DIR/kubectl" --kubeconfig "$WORK/kubeconfig" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: ferry-proxy-announcer, namespace: kube-system}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get, list, watch, create, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ferry-proxy-announcer, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: ferry-proxy-announcer}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:kube-proxy}
YAML
}

# deploy_metrics_server NODES: imports the metrics-server image on every node and applies
# lib/metrics-server.yaml (upstream's manifests, adapted as that file says). Returns at
# once: wait_metrics_server waits until the API serves, so that other add-ons start meanwhile.
deploy_metrics_server() {
	local nodes=$1
	log "metrics-server $METRICS_SERVER_VERSION behind APIService v1beta1.metrics.k8s.io"
	import_image "$METRICS_SERVER_TAR" "$nodes" || return 1
	sed -e "s|\${METRICS_SERVER_IMAGE}|$METRICS_SERVER_IMAGE|g" -e "s|\${APISERVER_HOST}|$BRIDGE_IP|g" \
		-e "s|\${APISERVER_PORT}|$APISERVER_PORT|g" "$CLUSTER_DIR/lib/metrics-server.yaml" |
		"$BIN_DIR/kubectl" --kubeconfig "$WORK/kubeconfig" apply -f - >/dev/null
}

# wait_metrics_server: waits until the APIService is Available and serves a node's metrics
# (metrics-server's first scrape of the kubelets). Returns 1 (after showing why) if not.
wait_metrics_server() {
	local k=("$BIN_DIR/kubectl" --kubeconfig "$WORK/kubeconfig")
	if ! "${k[@]}" wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=120s >/dev/null ||
		! wait_for "node metrics from metrics.k8s.io" 60 "${k[@]}" top nodes; then
		"${k[@]}" get apiservice v1beta1.metrics.k8s.io -o wide >&2 || true
		"${k[@]}" -n kube-system get pods -l k8s-app=metrics-server -o wide >&2 || true
		"${k[@]}" -n kube-system logs -l k8s-app=metrics-server --tail=20 >&2 || true
		return 1
	fi
	log "metrics-server serves metrics.k8s.io (kubectl top works)"
}
