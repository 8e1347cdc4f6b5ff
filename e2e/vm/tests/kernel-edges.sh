#!/bin/sh
# Runs the proxy's real-kernel tests (proxy/tests/real_kernel.rs) where IPVS and dummy links
# exist: the same cases the in-memory fakes pass in every `cargo test`, against the kernel.
set -e
# shellcheck source-path=SCRIPTDIR source=../guest/lib.sh
. /ferry/lib.sh

step "proxy real-kernel tests (IPVS, dummy link, conntrack, sysctls)"
FERRY_REAL_KERNEL=1 /bin/ferry-real-kernel-tests --ignored --test-threads=1
