# shellcheck shell=bash
# Host bridge, node network namespaces, veths and routes.
#
#   host: ferry0 192.168.230.1/24 ---+--- fv-node1 <veth> eth0 192.168.230.11 [netns ferry-node1] cni0 10.244.1.1/24 -- pods
#                                    +--- fv-node2 <veth> eth0 192.168.230.12 [netns ferry-node2] cni0 10.244.2.1/24 -- pods
#   host routes: 10.244.N.0/24 via 192.168.230.1N; 10.96.0.0/12 via 192.168.230.11
#   node routes: default via 192.168.230.1; 10.244.M.0/24 via 192.168.230.1M (M != N)
#
# The host does not forward (its ip_forward is left alone): anything a node or
# pod sends outside these ranges ends at the host and goes no further.

# in_node N CMD...: run CMD in node N's network namespace only (the mount
# namespace stays the host's, so kubelet's volume mounts and containerd's
# rootfs mounts see each other; `ip netns exec` would give each a private one).
in_node() {
	local n=$1
	shift
	nsenter --net="/run/netns/$(node_ns "$n")" -- "$@"
}

net_up() {
	local nodes=$1 i j ns veth
	if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link add "$BRIDGE" type bridge
	fi
	# The bridge's alias records which work dir owns the network (see net_owner).
	ip link set "$BRIDGE" alias "ferry-e2e $WORK"
	ip addr replace "$BRIDGE_IP/$NODE_NET_LEN" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	for ((i = 1; i <= nodes; i++)); do
		ns=$(node_ns "$i")
		veth=$(node_veth "$i")
		ip netns add "$ns"
		ip link add "$veth" type veth peer name eth0 netns "$ns"
		ip link set "$veth" master "$BRIDGE" up
		in_node "$i" ip link set lo up
		in_node "$i" ip addr add "$(node_ip "$i")/$NODE_NET_LEN" dev eth0
		in_node "$i" ip link set eth0 up
		in_node "$i" ip route add default via "$BRIDGE_IP"
		in_node "$i" sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
			net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
		ip route replace "$(node_pod_cidr "$i")" via "$(node_ip "$i")" dev "$BRIDGE"
	done
	for ((i = 1; i <= nodes; i++)); do
		for ((j = 1; j <= nodes; j++)); do
			((i == j)) || in_node "$i" ip route add "$(node_pod_cidr "$j")" via "$(node_ip "$j")"
		done
	done
	ip route replace "$SERVICE_CIDR" via "$(node_ip 1)" dev "$BRIDGE"
}

# net_owner: the work dir whose cluster owns the bridge (empty if no bridge or
# no record). Names and addresses are fixed, so one cluster per machine.
net_owner() {
	local alias
	alias=$(cat "/sys/class/net/$BRIDGE/ifalias" 2>/dev/null) || return 0
	[[ $alias == "ferry-e2e "* ]] && echo "${alias#ferry-e2e }"
	return 0
}

# foreign_owner: the other work dir if the cluster network belongs to another
# checkout's cluster (whose down must clean it up), else nothing.
foreign_owner() {
	local o
	o=$(net_owner)
	[[ -n $o && $o != "$WORK" ]] && echo "$o"
	return 0
}

# net_down: removes every node namespace, veth, route and the bridge, whether
# or not up got as far as creating them.
net_down() {
	local ns i
	for ((i = 1; i <= MAX_NODES; i++)); do
		ns=$(node_ns "$i")
		if [[ -e /run/netns/$ns ]]; then
			ip netns del "$ns" 2>/dev/null || { umount "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
		fi
		ip link del "$(node_veth "$i")" 2>/dev/null || true
		ip route del "$(node_pod_cidr "$i")" via "$(node_ip "$i")" 2>/dev/null || true
	done
	ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
	ip link del "$BRIDGE" 2>/dev/null || true
}
