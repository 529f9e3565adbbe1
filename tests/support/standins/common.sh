# Shared by the stand-ins in this directory (sourced, not run).
#
# STAND-INS, NOT THE REAL PROGRAMS: kgf-up's CI has no Docker engine and no GPU, so `docker`,
# `kind` (which needs docker), `kubectl` (which would need the kind cluster), `nvidia-smi`,
# `nvidia-ctk`, `systemctl` and `sysctl` (which would change the host) are replaced by these
# scripts in tests/kind_gpu.rs. Each appends its argv to $KGF_STANDIN_STATE/calls.log (fields
# separated by \x1f, calls by \x1e) and answers from a small model of the world kept under
# $KGF_STANDIN_STATE: clusters/, nodes/<node>/fs/ (a node's file system), containers/, kube/,
# host/. They understand exactly the commands kgf-up sends and fail loudly on anything else.
set -euo pipefail
S=${KGF_STANDIN_STATE:?KGF_STANDIN_STATE must name the stand-ins state directory}

record() {
	printf '%s\x1f' "$@" >>"$S/calls.log"
	printf '\x1e' >>"$S/calls.log"
}

unsupported() {
	echo "stand-in $(basename "$0"): unsupported command: $*" >&2
	exit 99
}
