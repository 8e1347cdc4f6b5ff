# shellcheck shell=bash
# shellcheck disable=SC2034 # variables here are used by the scripts that source this file
# Builds the cluster binaries and images into $FERRY_CACHE, keyed by content,
# so a second build (even from a fresh clone) is a cache hit. Source after common.sh.

# Bump when the recipe below changes in a way the hashed files don't show.
BUILD_RECIPE=1

K8S_TOOLS=(
	k8s.io/kubernetes/cmd/kube-apiserver
	k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kube-scheduler
	k8s.io/kubernetes/cmd/kubelet
	k8s.io/kubernetes/cmd/kube-proxy
	k8s.io/kubernetes/cmd/kubectl
	go.etcd.io/etcd/server/v3 # built as "server", renamed to etcd
	helm.sh/helm/v3/cmd/helm
	./images/imgbuild
)

hash_files() {
	(cd "$E2E_DIR" && cat "$@" && echo "recipe=$BUILD_RECIPE") | sha256sum | cut -c1-16
}

# imgbuild is built with the binaries, so its source is part of their key.
bin_key() { hash_files go.mod go.sum images/imgbuild/main.go; }

# remove_stale_partials DIR: DIR.partial.PID[.log] left by interrupted builds
# (whose PID is gone); a concurrent build's files stay.
remove_stale_partials() {
	local p pid
	for p in "$1".partial.*; do
		[[ -e $p ]] || continue
		pid=${p##*.partial.}
		pid=${pid%.log}
		[[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && continue
		rm -rf "$p"
	done
}

# go_mod_version MODULE: the version go.mod selects.
go_mod_version() {
	(cd "$E2E_DIR" && "$GO" list -m -f '{{.Version}}' "$1")
}

# build_binaries: sets BIN_DIR (and prepends nothing to PATH).
build_binaries() {
	local key dir tmp start helm_version
	key=$(bin_key)
	dir="$FERRY_CACHE/bin/$key"
	BIN_DIR=$dir
	if [[ -f $dir/.complete ]]; then
		log "binaries: cache hit $dir"
		return 0
	fi
	GO=$(go_bin)
	remove_stale_partials "$dir"
	helm_version=$(go_mod_version helm.sh/helm/v3)
	local kv=${K8S_VERSION#v}
	local ldflags="-s -w"
	local p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=${kv%%.*} -X $p.gitMinor=$(cut -d. -f2 <<<"$kv")"
		ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	ldflags+=" -X helm.sh/helm/v3/internal/version.version=$helm_version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	tmp="$dir.partial.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "building ${#K8S_TOOLS[@]} binaries with $("$GO" env GOVERSION) into $dir (cold: ~4-5 min on 2 cores; log: $tmp.log)"
	start=$SECONDS
	if ! (cd "$E2E_DIR" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags="$ldflags" -o "$tmp/" "${K8S_TOOLS[@]}") >"$tmp.log" 2>&1; then
		tail -n 40 "$tmp.log" >&2
		rm -rf "$tmp"
		die "go build failed (full log: $tmp.log)"
	fi
	mv "$tmp/server" "$tmp/etcd"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	rm -f "$tmp.log"
	touch "$dir/.complete"
	log "binaries built in $((SECONDS - start))s"
	prune_cache "$FERRY_CACHE/bin"
}

# prune_cache DIR: keeps the $FERRY_CACHE_KEEP (default 3) newest builds.
prune_cache() {
	local old
	mapfile -t old < <(find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '*.partial.*' -printf '%T@ %p\n' |
		sort -rn | tail -n +"$((${FERRY_CACHE_KEEP:-3} + 1))" | cut -d' ' -f2-)
	((${#old[@]} == 0)) || { log "pruning old builds: ${old[*]}"; rm -rf "${old[@]}"; }
}

image_key() {
	(cd "$E2E_DIR" && find images -type f -name '*.go' | sort | xargs cat | sha256sum | cut -c1-8) |
		{ read -r k; echo "${k}-$(bin_key)"; }
}

# build_images: sets IMAGE_DIR holding one docker-archive tarball per image.
build_images() {
	local key dir tmp v
	key=$(image_key)
	dir="$FERRY_CACHE/images/$key"
	IMAGE_DIR=$dir
	if [[ -f $dir/.complete ]]; then
		log "images: cache hit $dir"
		return 0
	fi
	GO=$(go_bin)
	remove_stale_partials "$dir"
	tmp="$dir.partial.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "building images into $dir"
	(
		cd "$E2E_DIR"
		export CGO_ENABLED=0
		"$GO" build -trimpath -ldflags="-s -w" -o "$tmp/pause" ./images/pause
		"$BIN_DIR/imgbuild" -bin "$tmp/pause" -tag "$PAUSE_IMAGE" -out "$tmp/pause.tar"
		for v in v1 v2; do
			"$GO" build -trimpath -ldflags="-s -w -X main.version=$v" -o "$tmp/web-$v/web" ./images/web
			"$BIN_DIR/imgbuild" -bin "$tmp/web-$v/web" -tag "$WEB_IMAGE:$v" -out "$tmp/web-$v.tar"
		done
	) || { rm -rf "$tmp"; die "building images failed"; }
	rm -rf "$tmp/pause" "$tmp/web-v1" "$tmp/web-v2"
	rm -rf "$dir"
	mv "$tmp" "$dir"
	touch "$dir/.complete"
	prune_cache "$FERRY_CACHE/images"
}
