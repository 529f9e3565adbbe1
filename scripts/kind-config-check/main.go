// Command kind-config-check validates kind cluster configs with kind v0.33.0's own code: the
// strict v1alpha4 loader (unknown fields are errors), defaulting and conversion, the cluster and
// node validation `kind create cluster` runs before it touches a container engine, and the merge
// of containerdConfigPatches into a version 2 containerd config (what kind does when it
// provisions a node). It prints one line per file and exits non-zero if any file is rejected.
//
// Usage: kind-config-check FILE...
package main

import (
	"fmt"
	"os"
	"strings"

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

func check(path string) error {
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
	workers := 0
	for _, n := range cfg.Nodes {
		if n.Role == "worker" {
			workers++
		}
	}
	fmt.Printf("ok %s: cluster %q, %d nodes (%d workers)\n", path, cfg.Name, len(cfg.Nodes), workers)
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kind-config-check FILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Printf("rejected %s: %v\n", path, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
