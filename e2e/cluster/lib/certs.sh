# shellcheck shell=bash
# PKI and kubeconfigs for the local cluster, generated with openssl into
# $WORK/pki. EC P-256 keys (fast to generate); one CA signs everything except
# the front-proxy (aggregation layer) client, which has its own CA.

PKI="$WORK/pki"

# new_key FILE
new_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
	chmod 600 "$1"
}

new_ca() { # new_ca NAME CN
	local name=$1 cn=$2
	new_key "$PKI/$name.key"
	openssl req -x509 -new -key "$PKI/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
		-out "$PKI/$name.crt" 2>/dev/null
}

# sign NAME SUBJECT USAGE [SANS] [CA]: USAGE is client, server or both;
# SANS a subjectAltName value such as "DNS:x,IP:1.2.3.4".
sign() {
	local name=$1 subj=$2 usage=$3 sans=${4:-} ca=${5:-ca} eku
	case $usage in
	client) eku=clientAuth ;;
	server) eku=serverAuth ;;
	both) eku=serverAuth,clientAuth ;;
	*) die "sign: bad usage $usage" ;;
	esac
	new_key "$PKI/$name.key"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=$eku"
		[[ -z $sans ]] || echo "subjectAltName=$sans"
	} >"$PKI/$name.ext"
	openssl req -new -key "$PKI/$name.key" -subj "$subj" 2>/dev/null |
		openssl x509 -req -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
			-days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.ext"
}

# write_kubeconfig FILE CERT_NAME: a kubeconfig for the API server at
# $BRIDGE_IP using client certificate $PKI/CERT_NAME.{crt,key}.
write_kubeconfig() {
	local file=$1 cert=$2
	cat >"$file" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: ferry-e2e
  cluster:
    server: https://$BRIDGE_IP:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $cert
  user:
    client-certificate: $PKI/$cert.crt
    client-key: $PKI/$cert.key
contexts:
- name: ferry-e2e
  context:
    cluster: ferry-e2e
    user: $cert
current-context: ferry-e2e
KCFG
	chmod 600 "$file"
}

# gen_pki NODES
gen_pki() {
	local nodes=$1 i
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	new_ca ca ferry-e2e-ca
	new_ca front-proxy-ca ferry-e2e-front-proxy-ca
	sign apiserver "/CN=kube-apiserver" server \
		"IP:$BRIDGE_IP,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,IP:10.0.2.2,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
	sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" client
	sign front-proxy-client "/CN=front-proxy-client" client "" front-proxy-ca
	sign admin "/O=system:masters/CN=kubernetes-admin" client
	sign controller-manager "/CN=system:kube-controller-manager" client
	sign scheduler "/CN=system:kube-scheduler" client
	sign kube-proxy "/CN=system:kube-proxy" client
	new_key "$PKI/sa.key"
	openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	for ((i = 1; i <= nodes; i++)); do
		local n
		n=$(node_name "$i")
		sign "kubelet-$n" "/O=system:nodes/CN=system:node:$n" client
		sign "kubelet-$n-serving" "/CN=$n" server "IP:$(node_ip "$i"),DNS:$n"
	done
	write_kubeconfig "$WORK/kubeconfig" admin
	write_kubeconfig "$PKI/controller-manager.kubeconfig" controller-manager
	write_kubeconfig "$PKI/scheduler.kubeconfig" scheduler
	write_kubeconfig "$PKI/kube-proxy.kubeconfig" kube-proxy
	for ((i = 1; i <= nodes; i++)); do
		write_kubeconfig "$PKI/kubelet-$(node_name "$i").kubeconfig" "kubelet-$(node_name "$i")"
	done
}
