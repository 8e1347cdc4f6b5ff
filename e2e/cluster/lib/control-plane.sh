# shellcheck shell=bash
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler on the host.
# etcd listens on loopback only; the API server on the bridge address only;
# the controller-manager and scheduler serve their health ports on loopback.

KCURL=(curl -fsS --max-time 5 --cacert "$WORK/pki/ca.crt" --cert "$WORK/pki/admin.crt" --key "$WORK/pki/admin.key")

start_etcd() {
	mkdir -p "$WORK/etcd"
	chmod 700 "$WORK/etcd"
	start_bg etcd "$BIN_DIR/etcd" \
		--name ferry-e2e \
		--data-dir "$WORK/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "ferry-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
		--quota-backend-bytes 2147483648 \
		--unsafe-no-fsync \
		--log-level warn
	wait_ready etcd 60 curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_apiserver() {
	local pki=$WORK/pki
	mkdir -p "$WORK/apiserver"
	start_bg kube-apiserver "$BIN_DIR/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
		--bind-address "$BRIDGE_IP" \
		--advertise-address "$BRIDGE_IP" \
		--secure-port "$APISERVER_PORT" \
		--cert-dir "$WORK/apiserver" \
		--tls-cert-file "$pki/apiserver.crt" \
		--tls-private-key-file "$pki/apiserver.key" \
		--client-ca-file "$pki/ca.crt" \
		--kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$pki/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$pki/ca.crt" \
		--kubelet-preferred-address-types InternalIP,Hostname \
		--service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
		--service-account-key-file "$pki/sa.pub" \
		--service-account-signing-key-file "$pki/sa.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--service-node-port-range 30000-32767 \
		--authorization-mode Node,RBAC \
		--enable-admission-plugins NodeRestriction \
		--allow-privileged \
		--requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
		--requestheader-allowed-names front-proxy-client \
		--requestheader-extra-headers-prefix X-Remote-Extra- \
		--requestheader-group-headers X-Remote-Group \
		--requestheader-username-headers X-Remote-User \
		--proxy-client-cert-file "$pki/front-proxy-client.crt" \
		--proxy-client-key-file "$pki/front-proxy-client.key" \
		--enable-aggregator-routing \
		--profiling=false \
		--v 1
	wait_ready kube-apiserver 120 "${KCURL[@]}" "https://$BRIDGE_IP:$APISERVER_PORT/readyz"
}

# The API server binds one address (the bridge's). A relay on loopback makes it
# reachable at https://127.0.0.1:6443 too, and so from a QEMU guest with user
# networking at https://10.0.2.2:6443 (both are in the serving cert).
start_apiserver_loopback() {
	start_bg apiserver-loopback socat \
		"TCP-LISTEN:$APISERVER_PORT,bind=127.0.0.1,reuseaddr,fork" "TCP:$BRIDGE_IP:$APISERVER_PORT"
	wait_ready apiserver-loopback 20 "${KCURL[@]}" "https://127.0.0.1:$APISERVER_PORT/readyz"
}

start_controller_manager() {
	local pki=$WORK/pki kcfg=$WORK/pki/controller-manager.kubeconfig
	mkdir -p "$WORK/controller-manager"
	start_bg kube-controller-manager "$BIN_DIR/kube-controller-manager" \
		--kubeconfig "$kcfg" \
		--authentication-kubeconfig "$kcfg" \
		--authorization-kubeconfig "$kcfg" \
		--bind-address 127.0.0.1 \
		--cert-dir "$WORK/controller-manager" \
		--leader-elect=false \
		--allocate-node-cidrs \
		--cluster-cidr "$POD_CIDR" \
		--node-cidr-mask-size 24 \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--use-service-account-credentials \
		--root-ca-file "$pki/ca.crt" \
		--service-account-private-key-file "$pki/sa.key" \
		--cluster-signing-cert-file "$pki/ca.crt" \
		--cluster-signing-key-file "$pki/ca.key" \
		--requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
		--client-ca-file "$pki/ca.crt" \
		--profiling=false \
		--v 1
	wait_ready kube-controller-manager 60 curl -fsSk --max-time 2 https://127.0.0.1:10257/healthz
}

start_scheduler() {
	local kcfg=$WORK/pki/scheduler.kubeconfig
	mkdir -p "$WORK/scheduler"
	start_bg kube-scheduler "$BIN_DIR/kube-scheduler" \
		--kubeconfig "$kcfg" \
		--authentication-kubeconfig "$kcfg" \
		--authorization-kubeconfig "$kcfg" \
		--bind-address 127.0.0.1 \
		--cert-dir "$WORK/scheduler" \
		--leader-elect=false \
		--profiling=false \
		--v 1
	wait_ready kube-scheduler 60 curl -fsSk --max-time 2 https://127.0.0.1:10259/healthz
}

# wait_ready NAME TIMEOUT CHECK...: waits for CHECK to succeed while the
# process NAME is alive; on failure shows its log and returns 1.
wait_ready() {
	local name=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$name"; then
			warn "$name exited"
			log_tail "$name"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			warn "$name not ready after ${timeout}s"
			log_tail "$name"
			return 1
		fi
		sleep 0.5
	done
	log "$name ready"
}
