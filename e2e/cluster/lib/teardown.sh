# shellcheck shell=bash
# Stopping and cleaning up. Everything here is idempotent and only touches
# what up creates: recorded pids (process groups), the /ferry-nodeN cgroup
# subtrees, mounts under $WORK, netns ferry-nodeN, veths fv-nodeN, bridge ferry0.

# running_components: names of recorded processes that are still alive.
running_components() {
	local f name
	for f in "$WORK"/pids/*.pid; do
		[[ -e $f ]] || continue
		name=$(basename "$f" .pid)
		alive "$name" && echo "$name"
	done
	return 0
}

# The parts of $WORK that up owns (e2e/vm keeps its own state in $WORK/vm).
owned_paths() {
	local p
	for p in "$WORK"/node[0-9] "$WORK/etcd" "$WORK/pki" "$WORK/apiserver" "$WORK/controller-manager" \
		"$WORK/scheduler" "$WORK/pids" "$WORK/kubeconfig" "$WORK/cluster.env" "$WORK/bin"; do
		[[ -e $p || -L $p ]] && echo "$p"
	done
	return 0
}

# mounts_under DIR...: mount points at or below the DIRs, deepest first.
mounts_under() {
	local dir
	for dir in "$@"; do
		# field 5 of mountinfo is the mount point (octal escapes for spaces etc.)
		awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
	done | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}

owned_mounts() {
	local paths
	mapfile -t paths < <(owned_paths)
	((${#paths[@]} == 0)) || mounts_under "${paths[@]}"
}

# leftovers: things an earlier up left behind (for a crash or reboot).
leftovers() {
	local i
	running_components
	[[ -z $(foreign_owner) ]] || return 0
	owned_mounts | sed 's/^/mount /'
	for ((i = 1; i <= MAX_NODES; i++)); do
		[[ ! -e /run/netns/$(node_ns "$i") ]] || echo "netns $(node_ns "$i")"
		compgen -G "/sys/fs/cgroup/*/$(node_ns "$i")" >/dev/null && echo "cgroup $(node_ns "$i")"
	done
	ip link show "$BRIDGE" >/dev/null 2>&1 && echo "bridge $BRIDGE"
	return 0
}

unmount_all() {
	local m pass
	for pass in 1 2 3; do
		while read -r m; do
			[[ -n $m ]] || continue
			umount "$m" 2>/dev/null || { ((pass < 3)) || umount -l "$m" 2>/dev/null || warn "cannot unmount $m"; }
		done < <(owned_mounts)
		[[ -n $(owned_mounts) ]] || return 0
		sleep 0.5
	done
}

teardown() {
	local i name c foreign
	foreign=$(foreign_owner)
	if [[ -n $foreign ]]; then
		# Only the processes we recorded; the network and cgroups are theirs.
		for c in "$WORK"/pids/*.pid; do
			[[ -e $c ]] && stop_proc "$(basename "$c" .pid)"
		done
		warn "the cluster network belongs to $foreign: leaving it alone"
		return 0
	fi
	# The proxies and kubelets first (so nothing restarts pods), then containerd.
	for ((i = 1; i <= MAX_NODES; i++)); do
		name=$(node_name "$i")
		stop_proc "proxy-$name"
		stop_proc "kubelet-$name"
	done
	for ((i = 1; i <= MAX_NODES; i++)); do
		stop_proc "containerd-$(node_name "$i")"
	done
	# Whatever is left in the nodes' cgroups: containerd shims and containers.
	for ((i = 1; i <= MAX_NODES; i++)); do
		cgroup_kill "$i"
		shim_sockets_cleanup "$i"
	done
	for c in kube-scheduler kube-controller-manager apiserver-loopback kube-apiserver etcd; do
		stop_proc "$c"
	done
	# Anything else recorded (e.g. added by tests or a future component).
	for c in "$WORK"/pids/*.pid; do
		[[ -e $c ]] && stop_proc "$(basename "$c" .pid)"
	done
	unmount_all
	net_down
	cni_cache_cleanup
	rmdir /run/containerd/s 2>/dev/null || true # only if empty (a host containerd may use it)
	# State that up regenerates; logs (and logs.prev) stay for post-mortems.
	while read -r c; do
		if [[ -n $(mounts_under "$c") ]]; then
			warn "not removing $c: still has mounts"
		else
			rm -rf "$c"
		fi
	done < <(owned_paths)
}

# The runc shims' sockets live in /run/containerd/s (not configurable in
# containerd 1.6); each task's bundle records its shim's address.
shim_sockets_cleanup() {
	local f a
	for f in "$(node_dir "$1")"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
		[[ -f $f ]] || continue
		a=$(<"$f")
		a=${a#unix://}
		[[ $a == /run/containerd/s/* ]] && rm -f "$a"
	done
	return 0
}

# libcni caches results in /var/lib/cni/results (not configurable through
# containerd 1.6): <network>-<sandbox>-eth0 for our networks ferry-nodeN, and
# cni-loopback-<sandbox>-lo for the same sandboxes.
cni_cache_cleanup() {
	local f id
	for f in /var/lib/cni/results/ferry-node[0-9]-*-eth0; do
		[[ -e $f ]] || continue
		id=${f#/var/lib/cni/results/ferry-node?-}
		id=${id%-eth0}
		rm -f "$f" "/var/lib/cni/results/cni-loopback-$id-lo"
	done
}
