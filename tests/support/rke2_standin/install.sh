#!/bin/sh
# STAND-IN for rke2's install script (https://get.rke2.io), used only by kgf-up's tests: the real
# installer downloads rke2 and needs systemd, neither of which exists on the test hosts. kgf-up pipes
# this file to `sh -s` on a host exactly as it would the real script. It records what it was asked
# (INSTALL_RKE2_* variables) and installs what the real one would leave behind: an `rke2` command
# that reports the version, rke2's containerd (version only), rke2-uninstall.sh, and the service unit
# (as the stand-in systemctl sees it).
set -eu
dir=/run/kgf-standin
type=${INSTALL_RKE2_TYPE:-server}
version=${INSTALL_RKE2_VERSION:-}
if [ -n "${INSTALL_RKE2_ARTIFACT_PATH:-}" ]; then
	[ -f "$INSTALL_RKE2_ARTIFACT_PATH/sha256sum-amd64.txt" ] || {
		echo "stand-in install.sh: no sha256sum-amd64.txt in $INSTALL_RKE2_ARTIFACT_PATH" >&2
		exit 1
	}
fi
[ -n "$version" ] || version=v1.36.3+rke2r1
printf '%s pid=%s uid=%s type=%s version=%s channel=%s artifact_path=%s args=%s\n' \
	"$(date +%s%N)" "$$" "$(id -u)" "$type" "${INSTALL_RKE2_VERSION:-}" "${INSTALL_RKE2_CHANNEL:-}" \
	"${INSTALL_RKE2_ARTIFACT_PATH:-}" "$*" >>"$dir/install.log"
cat >/usr/local/bin/rke2 <<RKE2
#!/bin/sh
# stand-in rke2 binary: only \`rke2 --version\` works.
echo "rke2 version $version (stand-in)"
echo "go version go1.26.0"
RKE2
chmod 0755 /usr/local/bin/rke2
install -m 0755 /dev/stdin /usr/local/bin/rke2-uninstall.sh <<'UNINSTALL'
#!/bin/sh
# stand-in rke2-uninstall.sh: stops the stand-in service, removes rke2's files, and deletes this
# host's Node (the real script leaves the Node object behind; the stand-in tidies the shared bed).
set -u
dir=/run/kgf-standin
. "$dir/env"
echo "$(date +%s%N) uninstall" >>"$dir/install.log"
# Only the forwarders themselves: a stale pid file may name another process by now.
if [ -f "$dir/forward.pid" ]; then
	for pid in $(cat "$dir/forward.pid"); do
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF socat; then kill "$pid" 2>/dev/null; fi
	done
	rm -f "$dir/forward.pid"
fi
"$KUBECTL" --kubeconfig "$BED_KUBECONFIG" delete node "$(hostname)" --ignore-not-found >/dev/null
rm -rf /etc/rancher/rke2 /var/lib/rancher/rke2 "$dir/units"
rm -f /usr/local/bin/rke2 /usr/local/bin/rke2-uninstall.sh
UNINSTALL
# rke2 ships its own containerd; kgf-up reads its version to choose the GPU operator's values.
mkdir -p /var/lib/rancher/rke2/bin
cat >/var/lib/rancher/rke2/bin/containerd <<'CONTAINERD'
#!/bin/sh
echo "containerd github.com/k3s-io/containerd v2.1.5-k3s1 (stand-in)"
CONTAINERD
chmod 0755 /var/lib/rancher/rke2/bin/containerd
mkdir -p "$dir/units"
: >"$dir/units/rke2-$type.service"
