#!/bin/sh
# ferry-proxy in IPVS mode watching the local cluster's API server (e2e/cluster/up) from the
# VM: the watchers list Services, EndpointSlices and the Node, the proxy programs them, and the
# `kubernetes` Service (10.96.0.1:443) leads to the API server through IPVS.
#
# Needs a self-contained kubeconfig (the VM cannot read the host's certificate files):
#   source e2e/cluster/env && kubectl config view --flatten --minify > /tmp/ferry-kubeconfig
#   e2e/vm/run --add target/release/ferry-proxy:/bin/ferry-proxy \
#     --add /tmp/ferry-kubeconfig:/etc/ferry/kubeconfig e2e/vm/cluster-tests/proxy-ipvs-api.sh
# e2e/run-e2e runs it so while its cluster is up.
set -e
# shellcheck source-path=SCRIPTDIR source=../guest/lib.sh
. /ferry/lib.sh

KUBECONFIG_FILE=/etc/ferry/kubeconfig
if [ ! -f "$KUBECONFIG_FILE" ]; then
  fail "no $KUBECONFIG_FILE (see the header of this test)"
fi
API=$(sed -n 's|.*server: https://\([0-9.]*\):.*|\1|p' "$KUBECONFIG_FILE")
[ -n "$API" ] || fail "no https://IP:port server in $KUBECONFIG_FILE"

step "reach the API server $API through qemu's user network"
route_to_host "$API"

step "the proxy watches the cluster as node1"
KUBECONFIG=$KUBECONFIG_FILE start_proxy --hostname-override node1 \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
wait_for 60 grep -q synced /run/ferry-vm/proxy.log
ipvsadm -Ln
ipvsadm -Ln -t 10.96.0.1:443 | grep -q "$API:6443" || fail "no real server $API:6443 for the kubernetes Service"

step "the kubernetes Service leads to the API server"
echo | socat -T 3 - TCP:10.96.0.1:443,connect-timeout=3 || fail "no TCP connection to 10.96.0.1:443"

grep "synced" /run/ferry-vm/proxy.log | sed -n 's/.*sync{\([^}]*\)}.*/\1/p'
grep -E " (WARN|ERROR) " /run/ferry-vm/proxy.log || true
log "proxy-ipvs-api: ok"
