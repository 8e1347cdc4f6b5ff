#!/bin/sh
# ferry-proxy in IPVS mode at scale, in the VM (qemu TCG: slower than hardware, so the
# figures are upper bounds): SERVICES ClusterIP Services x 10 endpoints from --from-file.
# Prints the first full sync, a one-endpoint partial sync, the periodic-style full sync of an
# unchanged cluster after a restart (adoption), and the proxy's RSS.
#
#   e2e/vm/run --add target/release/ferry-proxy:/bin/ferry-proxy \
#     e2e/vm/bench-ipvs-scale.sh [SERVICES]      (default 1000)
set -e
# shellcheck source-path=SCRIPTDIR source=guest/lib.sh
. /ferry/lib.sh

SERVICES=${1:-1000}
SNAPSHOT=/run/ferry-vm/snapshot.yaml
LOG=/run/ferry-vm/proxy.log

# write_snapshot CHANGED: SERVICES Services of 10 endpoints; Service CHANGED (if any) has
# its last endpoint replaced.
write_snapshot() {
  awk -v services="$SERVICES" -v changed="$1" 'BEGIN {
    print "apiVersion: v1\nkind: List\nitems:"
    print "  - {apiVersion: v1, kind: Node, metadata: {name: vm-node}, status: {addresses: [{type: InternalIP, address: 192.168.10.1}]}}"
    for (i = 1; i <= services; i++) {
      ip = sprintf("10.%d.%d.%d", 96 + int(i / 65536), int(i / 256) % 256, i % 256)
      printf "  - {apiVersion: v1, kind: Service, metadata: {name: s%d, namespace: scale}, spec: {clusterIP: %s, ports: [{name: p, port: 80}]}}\n", i, ip
      printf "  - apiVersion: discovery.k8s.io/v1\n    kind: EndpointSlice\n"
      printf "    metadata: {name: s%d-1, namespace: scale, labels: {kubernetes.io/service-name: s%d}}\n", i, i
      printf "    addressType: IPv4\n    ports: [{name: p, port: 8080}]\n    endpoints:\n"
      for (j = 1; j <= 10; j++) {
        last = (i == changed && j == 10) ? 200 : j
        printf "      - {addresses: [10.244.%d.%d], conditions: {ready: true}}\n", i % 250, last
      }
    }
  }' > "$SNAPSHOT.new"
  mv "$SNAPSHOT.new" "$SNAPSHOT"
}

syncs() { grep -c "synced" "$LOG" 2> /dev/null || echo 0; }
wait_syncs() {  # N: until the log has more than N "synced" lines
  wait_for 600 sh -c "[ \$(grep -c synced $LOG) -gt $1 ]"
}
last_sync() { grep "synced" "$LOG" | tail -n 1 | sed -n 's/.*sync{\([^}]*\)}.*/\1/p'; }
rss() { awk '/VmRSS/ { print $2, $3 }' "/proc/$(cat /run/ferry-vm/proxy.pid)/status"; }
proxy() {
  start_proxy --from-file "$SNAPSHOT" --hostname-override vm-node \
    --cluster-cidr 10.244.0.0/16 --sync-period 10m \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
}

step "$SERVICES Services x 10 endpoints"
write_snapshot 0
ls -la "$SNAPSHOT"
proxy
wait_syncs 0
log "first full sync: $(last_sync)"
assert_eq "$SERVICES" "$(ipvsadm -Ln | grep -c '^TCP')" "virtual servers"
assert_eq "$((SERVICES * 10))" "$(ipvsadm -Ln | grep -c -- '->.*Masq')" "real servers"
log "RSS: $(rss)"

step "one endpoint changes"
before=$(syncs)
write_snapshot "$((SERVICES / 2))"
kill -HUP "$(cat /run/ferry-vm/proxy.pid)"
wait_syncs "$before"
log "partial sync: $(last_sync)"

step "restart: adopt the kernel state"
before=$(syncs)
stop_proxy KILL
proxy
wait_syncs "$before"
log "full sync after a restart: $(last_sync)"
assert_contains "$(last_sync)" "ops=0" "the restart's sync"
log "RSS: $(rss)"
grep -E " (WARN|ERROR) " "$LOG" || true
log "proxy-ipvs-scale: ok"
