# shellcheck shell=bash
# Cluster add-ons: CoreDNS as the kube-dns Service at $CLUSTER_DNS. Source after
# common.sh and build.sh; node.sh (node_sock) for deploy_dns.

COREDNS_VERSION=v1.12.1 # what kubeadm v1.34 deploys (cmd/kubeadm/app/constants)
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$COREDNS_VERSION
# Bump when build_coredns changes in a way the hashed go.mod/go.sum don't show.
COREDNS_RECIPE=1

# build_coredns: sets COREDNS_TAR, the CoreDNS image (docker-archive), built
# from e2e/tools/coredns: a module of its own, because in e2e/go.mod CoreDNS
# and Kubernetes would raise each other's dependencies (client-go, protobuf,
# prometheus, ...) above what their releases were tested with.
build_coredns() {
	local mod=$E2E_DIR/tools/coredns key dir tmp start
	key=$( (cd "$mod" && cat go.mod go.sum && echo "recipe=$COREDNS_RECIPE") | sha256sum | cut -c1-16)
	dir="$FERRY_CACHE/coredns/$key"
	COREDNS_TAR=$dir/coredns.tar
	if [[ -f $dir/.complete ]]; then
		log "coredns: cache hit $dir"
		return 0
	fi
	GO=$(go_bin)
	remove_stale_partials "$dir"
	tmp="$dir.partial.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "building CoreDNS $COREDNS_VERSION into $dir (cold: ~3 min on 2 cores; log: $tmp.log)"
	start=$SECONDS
	if ! (cd "$mod" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s -w" -o "$tmp/coredns" github.com/coredns/coredns &&
		"$BIN_DIR/imgbuild" -bin "$tmp/coredns" -tag "$COREDNS_IMAGE" -out "$tmp/coredns.tar") >"$tmp.log" 2>&1; then
		tail -n 40 "$tmp.log" >&2
		rm -rf "$tmp"
		die "building CoreDNS failed (full log: $tmp.log)"
	fi
	rm -f "$tmp/coredns" "$tmp.log"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	touch "$dir/.complete"
	log "CoreDNS built in $((SECONDS - start))s"
	prune_cache "$FERRY_CACHE/coredns"
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
	for ((i = 1; i <= nodes; i++)); do
		ctr -n k8s.io -a "$(node_sock "$i")" images import "$COREDNS_TAR" >/dev/null ||
			{ warn "importing $COREDNS_TAR into $(node_name "$i") failed"; return 1; }
	done
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
