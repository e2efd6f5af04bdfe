#!/usr/bin/env bash
# Builds the third-party binaries that tests and the local e2e cluster need
# (etcd, Kubernetes components, flanneld, CNI plugins) from the Go module proxy,
# at the versions pinned in e2e/tools/versions.env, into a cache directory:
#
#   ${NFTPOLICY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nftpolicy/tools/<hash>}/bin
#
# <hash> covers every file under e2e/tools/, this script and the Go version, so
# a change to any of them builds into a fresh directory. A stamp file per subset
# makes a warm run return in well under a second.
#
# Usage: hack/build-tools.sh [apiserver|all|kubelet|npapi|conformance]...
#   apiserver    etcd, kube-apiserver, kubectl (what envtest/controller tests need)
#   all          (default) the above plus kube-controller-manager, kube-proxy,
#                flanneld, and the CNI plugins bridge, host-local, loopback,
#                portmap, flannel, and cnitool
#   kubelet      all, plus kubelet, kube-scheduler, agnhost (static; it is
#                also the pause image) and imagepack (e2e/tools/imagepack, which
#                packs images without Docker) for the real-kubelet cluster
#                (E2E_KUBELET=1)
#   npapi        kubelet, plus npapi-conformance.test: the network-policy-api
#                conformance suite (go test -c of e2e/tools/npapi, which runs
#                that module's tests), for `make conformance-npapi`
#   conformance  kubelet, plus the upstream e2e.test (go test -c
#                k8s.io/kubernetes/test/e2e) and the ginkgo CLI that runs it in
#                parallel, for `make conformance`
#
# Progress goes to stderr; the LAST line of stdout is the bin directory:
#   BIN=$(hack/build-tools.sh apiserver)
#   KUBEBUILDER_ASSETS=$BIN go test ./controllers/...
set -euo pipefail

exec 3>&1 1>&2 # keep stdout for the result only

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/e2e/tools
SELF=$ROOT/hack/build-tools.sh

log() { printf 'build-tools: %s\n' "$*"; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SELF"; }

want_all=false want_kubelet=false want_npapi=false want_conformance=false
for arg in "${@:-all}"; do
	case $arg in
	all) want_all=true ;;
	kubelet) want_all=true want_kubelet=true ;;
	npapi) want_all=true want_kubelet=true want_npapi=true ;;
	conformance) want_all=true want_kubelet=true want_conformance=true ;;
	apiserver) ;;
	-h | --help) usage; exit 0 ;;
	*) usage; die "unknown subset: $arg" ;;
	esac
done

command -v go >/dev/null || die "go is not on PATH"

set -a
# shellcheck source=../e2e/tools/versions.env
. "$TOOLS/versions.env"
set +a

# --- versions.env and the go.mod files must agree -----------------------------

# required_version <module dir> <module path>: the version a go.mod requires.
required_version() {
	awk -v m="$2" '{ if ($1 == "require") $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$TOOLS/$1/go.mod"
}
check_require() { # <module dir> <module path> <expected version>
	local got
	got=$(required_version "$1" "$2")
	[[ $got == "$3" ]] || die "e2e/tools/$1/go.mod requires $2 ${got:-<nothing>}, versions.env says $3"
}
check_require kube k8s.io/kubernetes "$KUBERNETES_VERSION"
check_require etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_require flannel github.com/flannel-io/flannel "$FLANNEL_VERSION"
check_require cni github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION"
check_require cni github.com/containernetworking/cni "$CNI_VERSION"
check_require imagepack github.com/google/go-containerregistry "$GO_CONTAINERREGISTRY_VERSION"
check_require cni-flannel github.com/containernetworking/plugins "$CNI_FLANNEL_PLUGINS_VERSION"
check_require npapi sigs.k8s.io/network-policy-api "$NETWORK_POLICY_API_VERSION"
[[ ${KUBERNETES_VERSION#v1.} == "${KUBE_STAGING_VERSION#v0.}" ]] ||
	die "KUBE_STAGING_VERSION $KUBE_STAGING_VERSION does not match KUBERNETES_VERSION $KUBERNETES_VERSION"
bad=$(awk -v v="$KUBE_STAGING_VERSION" '$2 == "=>" && $1 ~ /^k8s\.io\// && ($3 != $1 || $4 != v)' "$TOOLS/kube/go.mod")
[[ -z $bad ]] || die "e2e/tools/kube/go.mod: staging replaces not at $KUBE_STAGING_VERSION:"$'\n'"$bad"
[[ $(grep -c "=> k8s.io/.* $KUBE_STAGING_VERSION\$" "$TOOLS/kube/go.mod") -ge 30 ]] ||
	die "e2e/tools/kube/go.mod: staging replace lines missing"

# --- cache directory -------------------------------------------------------------

hash=$(
	cd "$ROOT"
	{
		go env GOVERSION GOOS GOARCH
		find e2e/tools hack/build-tools.sh -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
	} | sha256sum | cut -c1-16
)
DIR=${NFTPOLICY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nftpolicy/tools/$hash}
BIN=$DIR/bin

done_already() {
	{ ! $want_conformance || [[ -e $DIR/stamp-conformance ]]; } &&
		{ ! $want_npapi || [[ -e $DIR/stamp-npapi ]]; } &&
		{ ! $want_kubelet || [[ -e $DIR/stamp-kubelet ]]; } &&
		{ ! $want_all || [[ -e $DIR/stamp-all ]]; } &&
		[[ -e $DIR/stamp-apiserver ]]
}

if done_already; then
	log "up to date: $BIN"
	echo "$BIN" >&3
	exit 0
fi

mkdir -p "$BIN"
if command -v flock >/dev/null; then # serialise concurrent callers
	exec 4>"$DIR/lock"
	flock 4
	if done_already; then
		log "up to date: $BIN"
		echo "$BIN" >&3
		exit 0
	fi
fi

# --- build -------------------------------------------------------------------------

export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
GO_BUILD=(go build -trimpath)

build() { # <module dir> <ldflags> <-o target> <packages...>
	local dir=$1 ldflags=$2 out=$3
	shift 3
	log "building $* (e2e/tools/$dir)"
	(cd "$TOOLS/$dir" && "${GO_BUILD[@]}" -ldflags "-s -w $ldflags" -o "$out" "$@")
}

start=$SECONDS
kube_minor=${KUBERNETES_VERSION#v1.}
kube_minor=${kube_minor%%.*}
kube_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor -X $pkg.gitTreeState=clean"
done

if [[ ! -e $DIR/stamp-apiserver ]]; then
	build etcd "" "$BIN/etcd" go.etcd.io/etcd/server/v3
	build kube "$kube_ldflags" "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
	touch "$DIR/stamp-apiserver"
	log "apiserver subset built in $((SECONDS - start))s"
fi

if $want_all && [[ ! -e $DIR/stamp-all ]]; then
	build kube "$kube_ldflags" "$BIN/" k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-proxy
	build flannel "-X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION" "$BIN/flanneld" .
	build cni "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" "$BIN/" \
		github.com/containernetworking/plugins/plugins/main/bridge \
		github.com/containernetworking/plugins/plugins/main/loopback \
		github.com/containernetworking/plugins/plugins/ipam/host-local \
		github.com/containernetworking/plugins/plugins/meta/portmap \
		github.com/containernetworking/cni/cnitool
	build cni-flannel "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_FLANNEL_PLUGINS_VERSION" "$BIN/flannel" \
		github.com/containernetworking/plugins/plugins/meta/flannel
	touch "$DIR/stamp-all"
	log "all tools built in $((SECONDS - start))s"
fi

if $want_kubelet && [[ ! -e $DIR/stamp-kubelet ]]; then
	build kube "$kube_ldflags" "$BIN/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/test/images/agnhost
	build imagepack "" "$BIN/imagepack" .
	touch "$DIR/stamp-kubelet"
	log "kubelet tools built in $((SECONDS - start))s"
fi

if $want_npapi && [[ ! -e $DIR/stamp-npapi ]]; then
	log "building the network-policy-api conformance suite (e2e/tools/npapi)"
	(cd "$TOOLS/npapi" && go test -c -vet=off -trimpath -ldflags "-s -w" -o "$BIN/npapi-conformance.test" .)
	touch "$DIR/stamp-npapi"
	log "npapi tools built in $((SECONDS - start))s"
fi

if $want_conformance && [[ ! -e $DIR/stamp-conformance ]]; then
	log "building the upstream e2e.test (e2e/tools/kube)"
	(cd "$TOOLS/kube" && go test -c -vet=off -trimpath -ldflags "-s -w $kube_ldflags" -o "$BIN/e2e.test" k8s.io/kubernetes/test/e2e)
	build kube "" "$BIN/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
	touch "$DIR/stamp-conformance"
	log "conformance tools built in $((SECONDS - start))s"
fi

echo "$BIN" >&3
