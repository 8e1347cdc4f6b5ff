# shellcheck shell=bash
# shellcheck disable=SC2034 # CNI_BIN_DIR is used by node.sh
# Host prerequisites: checks them and installs missing Debian packages.

CNI_BIN_DIR=""

# command -> Debian package
declare -A DEP_PKG=(
	[containerd]=containerd [ctr]=containerd [runc]=runc [nft]=nftables
	[conntrack]=conntrack [openssl]=openssl [curl]=curl [ip]=iproute2
	[nsenter]=util-linux [setsid]=util-linux [flock]=util-linux [findmnt]=util-linux
	[sysctl]=procps [mount]=mount [umount]=mount [socat]=socat
	[arping]=iputils-arping [objcopy]=binutils [shellcheck]=shellcheck # L2 test, images/build-oci, make lint
)

find_cni_bin_dir() {
	local d
	for d in /usr/lib/cni /opt/cni/bin; do
		if [[ -x $d/bridge && -x $d/host-local && -x $d/loopback ]]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

ensure_deps() {
	local missing=() c
	for c in "${!DEP_PKG[@]}"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("${DEP_PKG[$c]}")
	done
	find_cni_bin_dir >/dev/null || missing+=(containernetworking-plugins)
	if ((${#missing[@]})); then
		mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
		command -v apt-get >/dev/null 2>&1 ||
			die "missing packages: ${missing[*]} (no apt-get here: install them with your package manager)"
		log "installing missing packages: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
			{ apt-get update >>"$WORK/apt.log" 2>&1 && apt-get install -y --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1; } ||
			{ tail -n 20 "$WORK/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $WORK/apt.log)"; }
	fi
	CNI_BIN_DIR=$(find_cni_bin_dir) || die "CNI plugins (bridge, host-local, loopback) not found in /usr/lib/cni or /opt/cni/bin: apt-get install containernetworking-plugins"
	check_kernel
}

check_kernel() {
	local problems=()
	[[ -d /proc/sys/net/bridge ]] || problems+=("br_netfilter (no /proc/sys/net/bridge): modprobe br_netfilter")
	grep -qw overlay /proc/filesystems || problems+=("overlayfs (not in /proc/filesystems): modprobe overlay")
	[[ -f /sys/fs/cgroup/pids/cgroup.procs ]] ||
		problems+=("cgroup v1 pids hierarchy at /sys/fs/cgroup/pids (this script supports cgroup v1/hybrid hosts)")
	ip link add fv-probe0 type veth peer name fv-probe1 2>/dev/null &&
		ip link del fv-probe0 || problems+=("veth interfaces: modprobe veth")
	nft list tables >/dev/null 2>&1 || problems+=("nf_tables (nft list tables fails)")
	if ((${#problems[@]})); then
		printf '  - %s\n' "${problems[@]}" >&2
		die "the kernel lacks what the cluster needs (above)"
	fi
}
