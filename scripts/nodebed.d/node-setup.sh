#!/bin/bash
# Run inside the node image's build container (scripts/nodebed make_node_image) after kind's
# base-image files and ours are copied in: the steps of kind's images/base/Dockerfile, on a root
# made from Debian's packages instead of kind's own builds. Environment: PAUSE_IMAGE.
set -euo pipefail
chmod 755 /kind /kind/bin /kind/bin/* /usr/local/bin/*
# kind's units start /usr/local/bin/containerd; Debian installs containerd into /usr/bin.
ln -sf /usr/bin/containerd /usr/local/bin/containerd
# containerd looks for CNI plugins in /opt/cni/bin; Debian installs them into /usr/lib/cni.
mkdir -p /opt/cni
ln -sfn /usr/lib/cni /opt/cni/bin
# As kind's base image: no services but the node's own, no kmsg in the journal, systemd as init.
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
	/lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
	/lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>/etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
# (quiet unless it fails: it names every link it makes)
out=$(systemctl enable kubelet.service containerd.service undo-mount-hacks.service kgf-bed-cni.service 2>&1 &&
	systemctl mask systemd-binfmt.service 2>&1) || { echo "$out" >&2; exit 1; }
mkdir -p /etc/kubernetes/manifests
# The runtime spec every pod starts from, as kind's base image makes it (its createContainer hook
# gives each container its own product_uuid).
ctr oci spec |
	jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
	jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json
# containerd's config is kind's, with two changes:
# - restrict_oom_score_adj: the node cannot lower a process's oom_score_adj without
#   CAP_SYS_RESOURCE, which the project's VM does not grant (kind sets it only for rootless nodes);
# - the sandbox image is the pause image built with the node's Kubernetes version.
sed -i -e 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' \
	-e "s|sandbox_image = .*|sandbox_image = \"$PAUSE_IMAGE\"|" /etc/containerd/config.toml
grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml
grep -qF "sandbox_image = \"$PAUSE_IMAGE\"" /etc/containerd/config.toml
