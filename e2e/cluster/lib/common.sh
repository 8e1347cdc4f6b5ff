# shellcheck shell=bash
# shellcheck disable=SC2034 # variables here are used by the scripts that source this file
# Shared settings and helpers of e2e/cluster/{up,down,build}. Source, don't run.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER_DIR="$E2E_DIR/cluster"
WORK="${FERRY_WORK:-$E2E_DIR/.work}"
FERRY_CACHE="${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}"

# Address plan (see README.md in this directory).
BRIDGE=ferry0
BRIDGE_IP=192.168.230.1     # host side; API server advertise/bind address
NODE_NET_PREFIX=192.168.230 # node N is $NODE_NET_PREFIX.1N (node1 = .11)
NODE_NET_LEN=24
POD_CIDR=10.244.0.0/16      # node N gets 10.244.N.0/24
SERVICE_CIDR=10.96.0.0/12
KUBERNETES_SVC_IP=10.96.0.1
CLUSTER_DNS=10.96.0.10
CLUSTER_DOMAIN=cluster.local
ETCD_CLIENT_PORT=12379 # loopback only; not the default port, to avoid clashes
ETCD_PEER_PORT=12380
APISERVER_PORT=6443
MAX_NODES=9

K8S_VERSION=v1.34.4
PAUSE_IMAGE=registry.k8s.io/pause:3.10
WEB_IMAGE=ferry.dev/e2e/web

log()  { printf '\033[1;34m[%s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '\033[1;33m[%s] warning:\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '\033[1;31m[%s] error:\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

node_name() { echo "node$1"; }
node_ip()   { echo "$NODE_NET_PREFIX.1$1"; }
node_ns()   { echo "ferry-node$1"; }
node_pod_cidr() { echo "10.244.$1.0/24"; }
# veth names are <= 15 chars: host end fv-nodeN, node end eth0 once moved.
node_veth() { echo "fv-node$1"; }

go_bin() {
	if command -v go >/dev/null 2>&1; then
		command -v go
	elif [[ -x /usr/local/go/bin/go ]]; then
		echo /usr/local/go/bin/go
	else
		die "Go (>= 1.24) is needed to build the cluster binaries: install it from https://go.dev/dl/ into /usr/local/go (or put 'go' on PATH)"
	fi
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND... : polls COMMAND every 0.5s.
wait_for() {
	local what=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			warn "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		sleep 0.5
	done
}

# --- processes -------------------------------------------------------------
# Every long-running process is started by start_bg in its own session
# (setsid), so it is its own process group leader; its pid (= pgid) is
# recorded in $WORK/pids/NAME.pid and its output goes to $WORK/logs/NAME.log.

# start_bg NAME [ip netns exec NS] CMD... (env prefixes via `env K=V`)
start_bg() {
	local name=$1
	shift
	mkdir -p "$WORK/pids" "$WORK/logs"
	# 9>&-: don't leak up's lock (fd 9) into long-running processes
	setsid "$@" >>"$WORK/logs/$name.log" 2>&1 </dev/null 9>&- &
	echo $! >"$WORK/pids/$name.pid"
}

pid_of() {
	local f="$WORK/pids/$1.pid"
	[[ -s $f ]] && cat "$f"
}

# alive NAME: the recorded process exists and is one we started (its
# environment carries FERRY_WORK=$WORK, set by up for everything it runs).
alive() {
	local pid
	pid=$(pid_of "$1") || return 1
	ours "$pid"
}

ours() {
	local pid=$1
	grep -qzxF "FERRY_WORK=$WORK" "/proc/$pid/environ" 2>/dev/null
}

# stop_proc NAME: TERM the process group, then KILL after a grace period.
stop_proc() {
	local name=$1 pid i
	pid=$(pid_of "$name") || return 0
	if ours "$pid"; then
		kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 40; i++)); do
			ours "$pid" || break
			[[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
			sleep 0.25
		done
		if ours "$pid"; then
			warn "$name (pid $pid) ignored SIGTERM; killing"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$WORK/pids/$name.pid"
}

# show the end of a component's log (used when something fails)
log_tail() {
	local name=$1 n=${2:-40}
	if [[ -s $WORK/logs/$name.log ]]; then
		printf '\n----- last %d lines of %s -----\n' "$n" "$WORK/logs/$name.log" >&2
		tail -n "$n" "$WORK/logs/$name.log" >&2
		printf -- '-----\n' >&2
	fi
}
