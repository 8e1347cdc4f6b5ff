# shellcheck shell=sh
# Guest-side helpers for Ferry VM tests (busybox sh). A test starts with
#   . /ferry/lib.sh
#
# Address plan (all of it inside the guest; nothing leaves the VM):
#   node = root netns    eth0 10.0.2.15/24: qemu user net, the host's loopback
#                        is 10.0.2.2 (no default route: nothing else is reachable)
#                        vclient 192.168.10.1/24: the node address clients see
#                        (NodePort / LoadBalancer tests use NODE_IP)
#                        vbackN  10.244.N.1/24: gateway of backend N
#   client netns         eth0 192.168.10.2/24, default via 192.168.10.1
#   backendN netns       eth0 10.244.N.2/24,  default via 10.244.N.1
#   service VIPs         10.96.0.0/12 on a dummy link (the proxy's ferry-ipvs0)
# Backends answer "<name> <peer-ip-they-saw>" on TCP 8080 (line protocol or
# HTTP GET) and UDP 5353 (one reply per datagram); see /ferry/bin/serve.

NODE_IP=192.168.10.1
CLIENT_IP=192.168.10.2

# busybox sh runs its own "ip" applet before searching PATH; that one lacks
# netns and veth, so point the name at iproute2.
ip() { /usr/sbin/ip "$@"; }

log() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }
step() { log "--- $*"; }

# fail REASON: the reason becomes part of the FERRY-VM-RESULT line; the
# kernel's view and the proxy's log are printed for the post-mortem.
# Tests run with "set -e" so that a fail inside $(...) still ends them.
# Straight to the console: a fail inside $(...) must still be seen.
fail() {
  echo "$*" > /run/ferry-vm/reason
  {
    log "FAIL: $*"
    echo "--- state at failure"
    ipvsadm -Ln
    nft list ruleset
    if [ -s /run/ferry-vm/proxy.log ]; then
      echo "--- proxy log (tail)"
      tail -n 50 /run/ferry-vm/proxy.log
    fi
  } > /dev/console 2>&1
  exit 1
}

assert_eq() {  # WANT GOT [WHAT]
  [ "$1" = "$2" ] || fail "${3:-value}: want '$1', got '$2'"
}

assert_contains() {  # HAYSTACK NEEDLE [WHAT]
  case $1 in *"$2"*) ;; *) fail "${3:-output} lacks '$2': $1" ;; esac
}

# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds.
wait_for() {
  _end=$(($(cut -d. -f1 /proc/uptime) + $1)); shift
  until "$@" > /dev/null 2>&1; do
    [ "$(cut -d. -f1 /proc/uptime)" -lt "$_end" ] || fail "timed out waiting for: $*"
    sleep 0.2
  done
}

in_ns() {  # NS CMD...: run CMD (a program, not a shell function) in netns NS
  _ns=$1; shift
  ip netns exec "$_ns" "$@"
}
# Background jobs call iproute2 directly: a backgrounded function runs in a
# subshell that keeps the caller's stdout open (a $(...) would never end).
IPNS="/usr/sbin/ip netns exec"

# veth_ns NS LOCAL_IF LOCAL_ADDR/LEN NS_ADDR/LEN GATEWAY: a netns whose eth0
# is wired to the node.
veth_ns() {
  ip netns add "$1"
  ip link add "$2" type veth peer name eth0 netns "$1"
  ip addr add "$3" dev "$2"
  ip link set "$2" up
  in_ns "$1" ip link set lo up
  in_ns "$1" ip addr add "$4" dev eth0
  in_ns "$1" ip link set eth0 up
  in_ns "$1" ip route add default via "$5"
}

setup_client() {
  veth_ns client vclient "$NODE_IP/24" "$CLIENT_IP/24" "$NODE_IP"
}

# setup_backends N [web]: netns backend1..N, each serving TCP 8080 and UDP
# 5353 with /ferry/bin/serve, or with "web" the e2e workload binary
# (e2e/images/web, added as /bin/web), which answers its hostname only.
setup_backends() {
  _i=1
  while [ "$_i" -le "$1" ]; do
    veth_ns "backend$_i" "vback$_i" "10.244.$_i.1/24" "10.244.$_i.2/24" "10.244.$_i.1"
    if [ "${2:-}" = web ]; then start_web "backend$_i"; else start_servers "backend$_i"; fi
    _i=$((_i + 1))
  done
  _i=1
  while [ "$_i" -le "$1" ]; do
    wait_for 10 listening "backend$_i" 8080
    _i=$((_i + 1))
  done
}

backend_ip() { echo "10.244.$1.2"; }  # N

start_servers() {  # NS: named after its netns
  $IPNS "$1" socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"exec /ferry/bin/serve $1 tcp" > /dev/null 2>&1 &
  $IPNS "$1" socat UDP-RECVFROM:5353,fork SYSTEM:"exec /ferry/bin/serve $1 udp" > /dev/null 2>&1 &
}

# Like a pod, web gets its own UTS namespace and answers its netns name.
start_web() {  # NS
  [ -x /bin/web ] || fail "no /bin/web: run with --add e2e/.work/vm/web:/bin/web"
  $IPNS "$1" unshare -u sh -c "hostname $1 && exec /bin/web" > "/run/ferry-vm/web-$1.log" 2>&1 &
}

listening() { in_ns "$1" ss -Hltn "sport = :$2" | grep -q .; }  # NS PORT

# Clients. Each prints the backend's answer "<name> <peer-ip>" and fails
# (status != 0, no output) when nothing answers within 3 s.
tcp_ask() {  # NS ADDR PORT
  echo ask | in_ns "$1" socat -T 3 - "TCP:$2:$3,connect-timeout=3"
}
# UDP has no end of stream, so a plain socat client would always wait its full
# -t; instead a child sends one datagram and exits on the first answer
# (printed on stderr, socat's stdout is the socket). A fixed SOURCE_PORT keeps
# one IPVS connection across calls.
udp_ask() {  # NS ADDR PORT [SOURCE_PORT]
  # shellcheck disable=SC2016 # $r belongs to the child shell
  _r=$(in_ns "$1" socat -T 3 -t 0.1 "UDP:$2:$3${4:+,sourceport=$4,reuseaddr}" \
    SYSTEM:'echo ask; IFS= read -r r && echo "$r" >&2' 2>&1)
  [ -n "$_r" ] && echo "$_r"
}
# busybox wget -T segfaults (Debian 1.35), hence timeout(1).
http_get() {  # NS URL
  in_ns "$1" timeout 5 wget -q -O - "$2"
}

# Held TCP connections, for drain and restart tests:
#   tcp_open ID NS ADDR PORT   connect, keep the connection, print the first answer
#   tcp_say ID                 one more line through it, print the answer
#   tcp_close ID               close it (the client half-closes, the server ends)
# The client's stdin is a fifo held open read-write by a sleeping process, so
# writes never block and the connection lives until tcp_close.
tcp_open() {
  _d=/run/ferry-vm/conn-$1
  mkdir -p "$_d" && mkfifo "$_d/in" && : > "$_d/out"
  sleep 1000000 <> "$_d/in" > /dev/null 2>&1 &
  echo $! > "$_d/holder"
  $IPNS "$2" socat -T 3600 - "TCP:$3:$4,connect-timeout=3" < "$_d/in" > "$_d/out" 2> "$_d/err" &
  echo $! > "$_d/pid"
  tcp_say "$1"
}
tcp_say() {  # ID
  _d=/run/ferry-vm/conn-$1
  _n=$(wc -l < "$_d/out")
  echo ask > "$_d/in"
  wait_for 5 _grown "$_d/out" "$_n"
  tail -n 1 "$_d/out"
}
_grown() { [ "$(wc -l < "$1")" -gt "$2" ]; }
tcp_close() {  # ID
  _d=/run/ferry-vm/conn-$1
  kill "$(cat "$_d/holder")" 2> /dev/null || true
  wait_for 5 _gone "$(cat "$_d/pid")"
  rm -rf "$_d"
}
_gone() { ! kill -0 "$1" 2> /dev/null; }

# route_to_host ADDR: reach ADDR (an address the project owns on the host,
# such as the local cluster's API server) through qemu user networking.
# Only 10.0.2.0/24 is routed by default.
route_to_host() {
  ip route add "$1/32" via 10.0.2.2 dev eth0
}

# expect_backend NAME CMD...: CMD's answer comes from backend NAME.
expect_backend() {
  _want=$1; shift
  _got=$("$@" 2>&1) || fail "no answer from: $* ($_got)"
  assert_eq "$_want" "${_got%% *}" "backend answering '$*'"
}

# expect_round_robin "NAME..." ROUNDS CMD...: ROUNDS rounds of one request per
# backend; every backend must answer exactly ROUNDS times.
expect_round_robin() {
  _names=$1 _rounds=$2; shift 2
  _n=0 _seen=
  for _x in $_names; do _n=$((_n + 1)); done
  _i=0
  while [ "$_i" -lt $((_n * _rounds)) ]; do
    _got=$("$@" 2>&1) || fail "no answer from: $* ($_got)"
    _seen="$_seen ${_got%% *}"
    _i=$((_i + 1))
  done
  log "answers:$_seen"
  for _x in $_names; do
    _c=$(echo "$_seen" | tr ' ' '\n' | grep -cx "$_x")
    assert_eq "$_rounds" "$_c" "answers from $_x in$_seen"
  done
}

# The proxy under test, added with --add .../ferry-proxy:/bin/ferry-proxy.
# Its output goes to /run/ferry-vm/proxy.log (tail printed by fail).
start_proxy() {  # ARG...
  /bin/ferry-proxy "$@" >> /run/ferry-vm/proxy.log 2>&1 &
  echo $! > /run/ferry-vm/proxy.pid
}
stop_proxy() {  # [SIGNAL]: stop it and wait until it is gone
  _p=$(cat /run/ferry-vm/proxy.pid)
  kill -"${1:-TERM}" "$_p" 2> /dev/null || true
  wait_for 15 _gone "$_p"
}

# Sysctls IPVS NAT needs; the proxy must set them itself, so only tests that
# drive IPVS by hand call this.
ipvs_sysctls() {
  sysctl -qw net.ipv4.ip_forward=1 net.ipv4.vs.conntrack=1
}
