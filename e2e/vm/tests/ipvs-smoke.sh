#!/bin/sh
# Proves the VM harness with ipvsadm alone (no Ferry): a VIP on a dummy link,
# IPVS TCP and UDP virtual servers with two masquerading real servers, traffic
# from the client netns reaching both backends round robin, then the same with
# an nft masquerade rule so the backends see the node's address.
set -e
# shellcheck source-path=SCRIPTDIR source=../guest/lib.sh
. /ferry/lib.sh

VIP=10.96.0.10

step "topology: client + 2 backends"
setup_client
setup_backends 2
ipvs_sysctls

step "VIP $VIP on dummy link ferry-test0"
ip link add ferry-test0 type dummy
ip addr add "$VIP/32" dev ferry-test0
ip link set ferry-test0 up

step "IPVS virtual servers (rr, masquerade)"
for proto in -t -u; do
  port=8080; [ "$proto" = -u ] && port=5353
  ipvsadm -A "$proto" "$VIP:$port" -s rr
  ipvsadm -a "$proto" "$VIP:$port" -r "$(backend_ip 1):$port" -m
  ipvsadm -a "$proto" "$VIP:$port" -r "$(backend_ip 2):$port" -m
done
ipvsadm -Ln

step "direct: each backend answers itself"
expect_backend backend1 tcp_ask client "$(backend_ip 1)" 8080
expect_backend backend2 udp_ask client "$(backend_ip 2)" 5353

step "TCP to the VIP: round robin, client address preserved"
expect_round_robin "backend1 backend2" 2 tcp_ask client "$VIP" 8080
answers="$(tcp_ask client "$VIP" 8080) $(tcp_ask client "$VIP" 8080)"
assert_contains "$answers" "backend1 $CLIENT_IP" "unmasqueraded TCP"
assert_contains "$answers" "backend2 $CLIENT_IP" "unmasqueraded TCP"

step "UDP to the VIP: round robin"
expect_round_robin "backend1 backend2" 2 udp_ask client "$VIP" 5353

step "UDP from a fixed source port sticks to one backend (one IPVS connection)"
first=$(udp_ask client "$VIP" 5353 40000)
expect_backend "${first%% *}" udp_ask client "$VIP" 5353 40000
expect_backend "${first%% *}" udp_ask client "$VIP" 5353 40000

step "a held TCP connection keeps its backend"
first=$(tcp_open held client "$VIP" 8080)
expect_backend "${first%% *}" tcp_say held
tcp_ask client "$VIP" 8080 > /dev/null   # others still round robin meanwhile
expect_backend "${first%% *}" tcp_say held
tcp_close held

step "HTTP GET through the VIP"
assert_contains "$(http_get client "http://$VIP:8080/")" "$CLIENT_IP" "HTTP answer"

step "nft masquerade: backends see their gateway (the node) as the peer"
nft -f - <<'NFT'
table ip ferry-test {
  chain post {
    type nat hook postrouting priority srcnat;
    ip saddr 192.168.10.0/24 ip daddr 10.244.0.0/16 masquerade
  }
}
NFT
answers="$(tcp_ask client "$VIP" 8080) $(tcp_ask client "$VIP" 8080)"
assert_contains "$answers" "backend1 10.244.1.1" "masqueraded TCP"
assert_contains "$answers" "backend2 10.244.2.1" "masqueraded TCP"
answers="$(udp_ask client "$VIP" 5353) $(udp_ask client "$VIP" 5353)"
assert_contains "$answers" "backend1 10.244.1.1" "masqueraded UDP"
assert_contains "$answers" "backend2 10.244.2.1" "masqueraded UDP"

step "kernel state"
ipvsadm -Ln --stats
conntrack -L -p udp 2>/dev/null | grep -q "dport=5353" || fail "no UDP conntrack entry for the VIP"
log "ipvs-smoke: ok"
