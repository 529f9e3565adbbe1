// Command kind-config-check validates kind cluster configs with kind v0.33.0's own code: the
// strict v1alpha4 loader (unknown fields are errors), defaulting and conversion, the cluster and
// node validation `kind create cluster` runs before it touches a container engine, the merge of
// containerdConfigPatches into a version 2 containerd config, and kubeadmConfigPatches applied
// to the kubeadm config kind writes for the control-plane node (what kind does when it
// provisions a node). It prints one line per file and exits non-zero if any file is rejected.
//
// Usage: kind-config-check [-kubeadm] FILE...
//
// With -kubeadm it also prints each file's patched kubeadm config, for tests to read.
package main

import (
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/internal/kubeadm"
	"sigs.k8s.io/kind/pkg/internal/apis/config"
	"sigs.k8s.io/kind/pkg/internal/apis/config/encoding"
	"sigs.k8s.io/kind/pkg/internal/patch"
)

// nodeContainerdConfig stands for the node image's /etc/containerd/config.toml: kind node images
// ship a version 2 config with the CRI plugin under io.containerd.grpc.v1.cri, and kind skips any
// patch whose version does not match, so the merge result tells whether our patch takes effect.
const nodeContainerdConfig = `version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
`

// kubernetesVersion is the node image's (kgf-up's default image: Kubernetes 1.36, for which kind
// uses its kubeadm v1beta4 template).
const kubernetesVersion = "v1.36.4"

// kubeadmConfig is the control-plane node's kubeadm config as kind's config action renders it
// before writing it into the node, with the cluster's patches applied. The node's address is a
// stand-in: no container exists here.
func kubeadmConfig(cfg *config.Cluster) (string, error) {
	data := kubeadm.ConfigData{
		NodeProvider:         "docker",
		ClusterName:          cfg.Name,
		KubernetesVersion:    kubernetesVersion,
		ControlPlaneEndpoint: cfg.Name + "-control-plane:6443",
		APIBindPort:          6443,
		APIServerAddress:     cfg.Networking.APIServerAddress,
		Token:                kubeadm.Token,
		PodSubnet:            cfg.Networking.PodSubnet,
		KubeProxyMode:        string(cfg.Networking.KubeProxyMode),
		ServiceSubnet:        cfg.Networking.ServiceSubnet,
		ControlPlane:         true,
		IPFamily:             cfg.Networking.IPFamily,
		FeatureGates:         cfg.FeatureGates,
		RuntimeConfig:        cfg.RuntimeConfig,
		NodeAddress:          "198.18.0.2",
		NodeName:             cfg.Name + "-control-plane",
	}
	base, err := kubeadm.Config(data)
	if err != nil {
		return "", err
	}
	patched, err := patch.KubeYAML(base, cfg.KubeadmConfigPatches, cfg.KubeadmConfigPatchesJSON6902)
	if err != nil {
		return "", fmt.Errorf("kubeadmConfigPatches: %w", err)
	}
	// kind ignores a patch that matches no document; each of ours must change something
	// (compared with the unpatched config as KubeYAML re-encodes it).
	unpatched, err := patch.KubeYAML(base, nil, nil)
	if err != nil {
		return "", err
	}
	for i, p := range cfg.KubeadmConfigPatches {
		one, err := patch.KubeYAML(base, []string{p}, nil)
		if err != nil {
			return "", fmt.Errorf("kubeadmConfigPatches[%d]: %w", i, err)
		}
		if one == unpatched {
			return "", fmt.Errorf("kubeadmConfigPatches[%d] changes nothing in kind's kubeadm config:\n%s", i, p)
		}
	}
	return patched, nil
}

func check(path string, printKubeadm bool) error {
	cfg, err := encoding.Load(path)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	merged, err := patch.ContainerdTOML(nodeContainerdConfig, cfg.ContainerdConfigPatches, cfg.ContainerdConfigPatchesJSON6902)
	if err != nil {
		return fmt.Errorf("containerdConfigPatches: %w", err)
	}
	if len(cfg.ContainerdConfigPatches) > 0 && !strings.Contains(merged, `config_path = "/etc/containerd/certs.d"`) {
		return fmt.Errorf("containerdConfigPatches did not set the registry config_path; merged config:\n%s", merged)
	}
	kubeadmText, err := kubeadmConfig(cfg)
	if err != nil {
		return err
	}
	workers := 0
	for _, n := range cfg.Nodes {
		if n.Role == "worker" {
			workers++
		}
	}
	fmt.Printf("ok %s: cluster %q, %d nodes (%d workers), pods %s, services %s, %d kubeadm and %d containerd patches\n",
		path, cfg.Name, len(cfg.Nodes), workers, cfg.Networking.PodSubnet, cfg.Networking.ServiceSubnet,
		len(cfg.KubeadmConfigPatches), len(cfg.ContainerdConfigPatches))
	if printKubeadm {
		fmt.Printf("--- kubeadm config of %s\n%s", path, kubeadmText)
		fmt.Printf("--- containerd config of %s\n%s", path, merged)
	}
	return nil
}

func main() {
	args := os.Args[1:]
	printKubeadm := len(args) > 0 && args[0] == "-kubeadm"
	if printKubeadm {
		args = args[1:]
	}
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, "usage: kind-config-check [-kubeadm] FILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range args {
		if err := check(path, printKubeadm); err != nil {
			fmt.Printf("rejected %s: %v\n", path, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
