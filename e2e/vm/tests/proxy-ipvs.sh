#!/bin/sh
# ferry-proxy in IPVS mode against the real kernel, fed by --from-file: ClusterIP TCP and UDP,
# NodePort, a LoadBalancer IP, session affinity, a healthCheckNodePort, a removed endpoint
# draining, UDP conntrack cleanup, an established connection surviving kill -9 and a
# restart with nothing flushed, and cleanupOnExit removing Ferry's kernel state, only Ferry's.
#
#   cargo build --release -p ferry-proxy
#   e2e/vm/run --add target/release/ferry-proxy:/bin/ferry-proxy e2e/vm/tests/proxy-ipvs.sh
set -e
# shellcheck source-path=SCRIPTDIR source=../guest/lib.sh
. /ferry/lib.sh

SNAPSHOT=/run/ferry-vm/snapshot.yaml
CONFIG=/run/ferry-vm/proxy.yaml
WEB=10.96.0.10      # TCP 80 -> 8080, NodePort 30080, LoadBalancer 203.0.113.10
DNS=10.96.0.53      # UDP 53 -> 5353
STICKY=10.96.0.20   # TCP 80 -> 8080, sessionAffinity ClientIP
LOCAL=10.96.0.30    # TCP 80 -> 8080, LoadBalancer 203.0.113.30, externalTrafficPolicy Local
LB_IP=203.0.113.10
HEALTH_PORT=32000

# endpoints NAME PORT BACKEND...: one EndpointSlice of Service NAME, its endpoints on this node.
endpoints() {
  _name=$1 _port=$2 _protocol=TCP; shift 2
  [ "$_name" = dns ] && _protocol=UDP
  cat <<EOF
  - apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata: {name: $_name-1, namespace: default, labels: {kubernetes.io/service-name: $_name}}
    addressType: IPv4
    ports: [{name: p, protocol: $_protocol, port: $_port}]
    endpoints:
EOF
  for _n in "$@"; do
    echo "      - {addresses: [$(backend_ip "$_n")], nodeName: vm-node, conditions: {ready: true}}"
  done
}

# write_snapshot "WEB_BACKENDS" "DNS_BACKENDS": the cluster, replaced atomically.
write_snapshot() {
  {
    cat <<EOF
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Node
    metadata: {name: vm-node}
    status: {addresses: [{type: InternalIP, address: $NODE_IP}]}
  - apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: default}
    spec:
      type: LoadBalancer
      clusterIP: $WEB
      ports: [{name: p, protocol: TCP, port: 80, nodePort: 30080}]
    status: {loadBalancer: {ingress: [{ip: $LB_IP}]}}
  - apiVersion: v1
    kind: Service
    metadata: {name: dns, namespace: default}
    spec:
      clusterIP: $DNS
      ports: [{name: p, protocol: UDP, port: 53}]
  - apiVersion: v1
    kind: Service
    metadata: {name: sticky, namespace: default}
    spec:
      clusterIP: $STICKY
      ports: [{name: p, protocol: TCP, port: 80}]
      sessionAffinity: ClientIP
      sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  - apiVersion: v1
    kind: Service
    metadata: {name: local, namespace: default}
    spec:
      type: LoadBalancer
      clusterIP: $LOCAL
      externalTrafficPolicy: Local
      healthCheckNodePort: $HEALTH_PORT
      ports: [{name: p, protocol: TCP, port: 80, nodePort: 30090}]
    status: {loadBalancer: {ingress: [{ip: 203.0.113.30}]}}
EOF
    # shellcheck disable=SC2086 # word splitting makes the backend lists
    endpoints web 8080 $1
    # shellcheck disable=SC2086
    endpoints dns 5353 $2
    endpoints sticky 8080 1 2
    endpoints local 8080 1
  } > "$SNAPSHOT.new"
  mv "$SNAPSHOT.new" "$SNAPSHOT"
}

reload() {
  kill -HUP "$(cat /run/ferry-vm/proxy.pid)"
}

# A short grace period: a closed TCP connection stays "inactive" in IPVS for minutes.
write_config() {
  cat > "$CONFIG" <<EOF
mode: ipvs
ipvs: {scheduler: rr, gracefulTerminationSeconds: 8}
minSyncPeriod: 200ms
syncPeriod: 30s
EOF
}

proxy() {
  start_proxy --config "$CONFIG" --from-file "$SNAPSHOT" --hostname-override vm-node \
    --cluster-cidr 10.244.0.0/16 \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
}

# real_servers PROTO VIP:PORT: "address:port weight" per real server.
real_servers() {
  ipvsadm -Ln "$1" "$2" | awk '/->/ && $2 != "RemoteAddress:Port" { print $2, $4 }'
}
has_real_server() { real_servers "$1" "$2" | grep -q "^$3 ${4:-}"; }  # PROTO VS RS [WEIGHT]
lacks_real_server() { ! real_servers "$1" "$2" | grep -q "^$3 "; }   # PROTO VS RS
synced_times() { grep -c "synced" /run/ferry-vm/proxy.log; }
# The IPVS table without its connection counters, which change as old entries expire.
ipvs_table() { ipvsadm -Ln | awk '$1 == "->" { print $1, $2, $3, $4; next } { print }'; }
# active_connections PROTO VS RS
active_connections() { ipvsadm -Ln "$1" "$2" | awk -v rs="$3" '$2 == rs { print $5 }'; }
http_local() { timeout 5 wget -q -O - "$1"; }

step "topology: client + 2 backends; proxy from $SNAPSHOT"
setup_client
setup_backends 2
write_snapshot "1 2" "1 2"
write_config
proxy
wait_for 30 grep -q synced /run/ferry-vm/proxy.log
ipvsadm -Ln

step "the proxy set its sysctls and bound the service addresses on ferry-ipvs0"
assert_eq 1 "$(sysctl -n net.ipv4.ip_forward)" ip_forward
assert_eq 1 "$(sysctl -n net.ipv4.vs.conntrack)" vs.conntrack
assert_eq 1 "$(sysctl -n net.ipv4.vs.expire_nodest_conn)" vs.expire_nodest_conn
assert_contains "$(ip -o addr show dev ferry-ipvs0)" "$WEB/32" "ferry-ipvs0"
assert_contains "$(nft list table inet ferry)" "masquerade" "helper table"

step "ClusterIP TCP: round robin, masqueraded (the client is outside the cluster CIDR)"
expect_round_robin "backend1 backend2" 2 tcp_ask client "$WEB" 80
answers="$(tcp_ask client "$WEB" 80) $(tcp_ask client "$WEB" 80)"
assert_contains "$answers" "backend1 10.244.1.1" "masqueraded TCP"
assert_contains "$answers" "backend2 10.244.2.1" "masqueraded TCP"

step "ClusterIP UDP: round robin"
expect_round_robin "backend1 backend2" 2 udp_ask client "$DNS" 53

step "NodePort on the node address $NODE_IP:30080"
expect_round_robin "backend1 backend2" 2 tcp_ask client "$NODE_IP" 30080

step "LoadBalancer IP $LB_IP"
expect_round_robin "backend1 backend2" 2 tcp_ask client "$LB_IP" 80

step "session affinity sticks to one backend"
first=$(tcp_ask client "$STICKY" 80)
for _ in 1 2 3 4; do expect_backend "${first%% *}" tcp_ask client "$STICKY" 80; done

step "healthCheckNodePort $HEALTH_PORT of the Local Service"
health=$(http_local "http://127.0.0.1:$HEALTH_PORT/")
assert_contains "$health" '"localEndpoints":1' "health check body"
assert_contains "$health" '"name":"local"' "health check body"

step "/healthz and /metrics"
assert_contains "$(http_local http://127.0.0.1:10256/healthz)" '"healthy":true' "/healthz"
metrics=$(http_local http://127.0.0.1:10249/metrics)
assert_contains "$metrics" 'ferry_proxy_service_connections_total{namespace="default",service="web"}' "metrics"
web_connections=$(echo "$metrics" | awk -F' ' '/service_connections_total\{namespace="default",service="web"\}/ { print $2 }')
# At least the requests made above to web's ClusterIP, NodePort and LoadBalancer frontends:
# two per round-robin check (it stops once both backends answered) plus the two extra ones.
[ "${web_connections%.*}" -ge 8 ] || fail "web connections counter: $web_connections, want >= 8"

step "a removed endpoint drains: no new connections, the open one keeps working"
held=$(tcp_open held client "$WEB" 80)
leaving=${held%% *}
staying=backend1; [ "$leaving" = backend1 ] && staying=backend2
log "held connection on $leaving; removing it from the slice"
write_snapshot "${staying#backend}" "1 2"
reload
wait_for 15 has_real_server -t "$WEB:80" "$(backend_ip "${leaving#backend}"):8080" 0
for _ in 1 2 3 4; do expect_backend "$staying" tcp_ask client "$WEB" 80; done
expect_backend "$leaving" tcp_say held
tcp_close held
wait_for 30 lacks_real_server -t "$WEB:80" "$(backend_ip "${leaving#backend}"):8080"
log "drained real server deleted (a closed connection lingers as inactive until the grace period ends)"

step "UDP with a fixed source port moves to the remaining backend (conntrack cleanup)"
write_snapshot "1 2" "1 2"
reload
wait_for 15 has_real_server -u "$DNS:53" "$(backend_ip 2):5353"
wait_for 15 has_real_server -t "$WEB:80" "$(backend_ip 2):8080" 1
first=$(udp_ask client "$DNS" 53 40000)
old=${first%% *}
expect_backend "$old" udp_ask client "$DNS" 53 40000
new=backend1; [ "$old" = backend1 ] && new=backend2
write_snapshot "1 2" "${new#backend}"
reload
wait_for 15 lacks_real_server -u "$DNS:53" "$(backend_ip "${old#backend}"):5353"
expect_backend "$new" udp_ask client "$DNS" 53 40000
expect_backend "$new" udp_ask client "$DNS" 53 40000

step "an established connection survives kill -9 and a restart; nothing is flushed"
held=$(tcp_open survivor client "$WEB" 80)
survivor=${held%% *}
survivor_rs="$(backend_ip "${survivor#backend}"):8080"
before=$(ipvs_table)
syncs=$(synced_times)
stop_proxy KILL
expect_backend "$survivor" tcp_say survivor
proxy
wait_for 30 sh -c "[ \$(grep -c synced /run/ferry-vm/proxy.log) -gt $syncs ]"
assert_eq "$before" "$(ipvs_table)" "IPVS table across the restart"
[ "$(active_connections -t "$WEB:80" "$survivor_rs")" -ge 1 ] || fail "$survivor_rs lost its connection"
expect_backend "$survivor" tcp_say survivor
assert_contains "$(grep synced /run/ferry-vm/proxy.log | tail -n 1)" "ops=0" "the restart's sync"
tcp_close survivor

# What `helm uninstall` relies on (the chart's pre-delete hook sets cleanupOnExit and rolls
# the proxies): the IPVS half of it needs this kernel; nftables mode is covered on the cluster.
step "cleanupOnExit: on SIGTERM the proxy removes its virtual servers, ferry-ipvs0 and table ferry, nothing else"
FOREIGN=198.51.100.1:80 # not on ferry-ipvs0, no NodePort: not Ferry's
ipvsadm -A -t "$FOREIGN" -s rr
echo "cleanupOnExit: true" >> "$CONFIG"
syncs=$(synced_times)
stop_proxy
proxy
wait_for 30 sh -c "[ \$(grep -c synced /run/ferry-vm/proxy.log) -gt $syncs ]"
ipvsadm -Ln -t "$FOREIGN" > /dev/null || fail "the proxy removed a virtual server that is not Ferry's"
ip link show ferry-ipvs0 > /dev/null && nft list table inet ferry > /dev/null # there is something to remove
stop_proxy
assert_eq "$FOREIGN" "$(ipvsadm -Ln | awk '$1 == "TCP" || $1 == "UDP" { print $2 }')" "virtual servers left"
! ip link show ferry-ipvs0 > /dev/null 2>&1 || fail "ferry-ipvs0 is still there"
! nft list table inet ferry > /dev/null 2>&1 || fail "table inet ferry is still there"
grep -q "removing Ferry's kernel state" /run/ferry-vm/proxy.log || fail "the proxy did not say it cleaned up"
ipvsadm -D -t "$FOREIGN"

step "sync times, and the proxy's warnings (none expected)"
grep "synced" /run/ferry-vm/proxy.log | sed -n 's/.*sync{\([^}]*\)}.*/\1/p'
grep -E " (WARN|ERROR) " /run/ferry-vm/proxy.log || true
log "proxy-ipvs: ok"
