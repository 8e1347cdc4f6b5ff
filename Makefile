# Ferry's entry points. `make up` runs Ferry on a local cluster; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: up down test deps build lint unit chart crds e2e vm-test bench

## up: local cluster from upstream Kubernetes, Ferry's CRDs, operator and proxy, a sample App.
up: deps build
	e2e/up-demo

## down: stop the local cluster and remove everything `up` created.
down:
	e2e/cluster/down

## test: every test — lint, unit, CRD drift, the real cluster end to end, real IPVS in a VM.
test: deps lint unit chart build e2e vm-test

deps:
	e2e/setup

build:
	$(CARGO) build --release --locked --workspace --bins

lint:
	$(CARGO) fmt --all --check
	shellcheck -x e2e/setup e2e/run-e2e e2e/run-bench e2e/up-demo e2e/vm/tests/*.sh e2e/vm/cluster-tests/*.sh e2e/vm/bench-ipvs-scale.sh e2e/operator/start e2e/cluster/up e2e/cluster/down e2e/cluster/proxy e2e/cluster/build e2e/vm/run e2e/vm/build-image e2e/vm/run-tests helm/sync-crds images/build-oci e2e/kind/run e2e/conformance/build e2e/conformance/run
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --locked --workspace
	cd e2e && go vet ./... && go test -count=1 ./bench/...

## chart: the Helm chart's offline checks (lint, strict decode, schema, CRD copy) and the kind config.
chart:
	helm/sync-crds --check
	cd e2e && go test -count=1 ./chart/ ./kindconfig/

crds:
	$(CARGO) run --locked -q -p ferry-operator --bin ferry-crdgen -- crds
	helm/sync-crds

e2e:
	e2e/run-e2e

vm-test:
	e2e/vm/run-tests

## bench: every benchmark, printing figures (model + diff, IPVS at scale in the VM, App vs Deployment).
bench: deps
	e2e/run-bench
