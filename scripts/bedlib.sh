# Shared by scripts/testbed and scripts/nodebed (sourced, not run): the pinned versions, the cache
# layout, messages, and building pinned Go modules into the cache's store.
#
# The caller sets `here` (the scripts directory) and `bed_tool` (its name, for messages) first.

# shellcheck source=versions.env
source "$here/versions.env"

cache=${KGF_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kgf-up/testbed}
# One directory per component and version: changing one pin rebuilds one component.
store=$cache/store
# The binaries of one set of pins, linked from the store (a new pin gives a new directory).
versions_key="k8s-${K8S_VERSION#v}-$(grep -v '^#' "$here/versions.env" | sha256sum | cut -c1-8)"
bin=$cache/$versions_key/bin
netns=${KGF_TESTBED_NETNS:-kgf-testbed}
state=${KGF_TESTBED_STATE:-$cache/state}

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

say() { printf '%s: %s\n' "$bed_tool" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$bed_tool" "$1" >&2
	[ $# -lt 2 ] || printf '%s: fix: %s\n' "$bed_tool" "$2" >&2
	exit 1
}

# go_build DIR OUT_DIR LDFLAGS PKG... builds packages of the wrapper module in DIR into OUT_DIR.
go_build() {
	local dir=$1 out=$2 ldflags=$3
	shift 3
	(cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/" "$@")
}

# A wrapper module in DIR: go.mod that requires MODULE@VERSION, plus extra lines (replace directives).
wrapper() {
	local dir=$1 module=$2 version=$3 extra=${4:-}
	mkdir -p "$dir"
	printf 'module kgfup.local/testbed/%s\n\ngo 1.26\n\nrequire %s %s\n%s\n' \
		"$(basename "$dir")" "$module" "$version" "$extra" >"$dir/go.mod"
}

# module_dir MODULE@VERSION prints where the Go module cache keeps the module's files.
module_dir() {
	local dir
	dir=$(go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
	[ -d "$dir" ] || die "could not download $1" "check that the Go module proxy is reachable (go env GOPROXY)"
	printf '%s\n' "$dir"
}

# k8s_wrapper DIR writes the wrapper module for k8s.io/kubernetes@$K8S_VERSION into DIR and prints
# the version ldflags its binaries need.
k8s_wrapper() {
	local src=$1 v=$K8S_VERSION
	local minor=${v#v1.}
	minor=${minor%%.*}
	# k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging in its
	# own repository, which a dependent module cannot see: point each at its published v0.x.y tag.
	local gomod replaces
	gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
	[ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$v" "check that the Go module proxy is reachable (go env GOPROXY)"
	replaces=$(awk -v tag="v0.${v#v1.}" '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print "replace " $1 " => " $1 " " tag}' "$gomod" | sort -u)
	wrapper "$src" k8s.io/kubernetes "$v" "$replaces"
	local ld="" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	printf '%s\n' "$ld"
}

# Each build_NAME SRC OUT builds component NAME at $version (set by store_component) into OUT, from
# a wrapper module in SRC.
build_kubernetes() {
	local src=$1 out=$2 ld
	ld=$(k8s_wrapper "$src") || return 1
	go_build "$src" "$out" "$ld" k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
	local src=$1 out=$2
	wrapper "$src" go.etcd.io/etcd/server/v3 "$version"
	# etcd's server module has no main package of its own: a three-line one calls etcdmain.
	printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$src/main.go"
	(cd "$src" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" .)
}

# store_component NAME VERSION BINARY... builds NAME at VERSION into $store/NAME-VERSION unless
# every BINARY is there; build_NAME (dashes as underscores) does the work and reads $version.
store_component() {
	local name=$1 version=$2 b missing=0
	shift 2
	local out=$store/$name-$version
	for b in "$@"; do [ -x "$out/$b" ] || missing=1; done
	[ $missing = 1 ] || return 0
	say "building $name $version ..."
	local t=$SECONDS
	mkdir -p "$out"
	"build_${name//-/_}" "$cache/src/$name-$version" "$out" ||
		die "building $name failed (output above)" "fix the cause, then run scripts/testbed build again: finished binaries are kept"
	say "built $name in $((SECONDS - t))s"
}
