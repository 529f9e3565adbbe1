# Shared by the stand-ins in this directory (sourced, not run).
#
# STAND-INS, NOT THE REAL PROGRAMS, and only for what needs a GPU: CI has real Docker and kind
# (the real-node bed, tests/kind_real.rs) but no GPU, no NVIDIA driver and no container toolkit.
# A GPU kind cluster cannot be made without them, so for the GPU steps of tests/kind_gpu.rs
# `docker`, `kind` and `kubectl` (which would need that cluster), `nvidia-smi`, `nvidia-ctk`, and
# `systemctl` and `sysctl` (which would change the host) are replaced by these scripts. Each appends its argv to $KGF_STANDIN_STATE/calls.log (fields
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
