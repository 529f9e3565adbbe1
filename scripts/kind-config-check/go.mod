// Its module path sits under sigs.k8s.io/kind/pkg/cluster/ on purpose: Go lets only packages
// below sigs.k8s.io/kind/pkg/ import kind's internal config loader (strict v1alpha4 decoding,
// defaulting, conversion, Validate: what `kind create cluster` runs first), and only packages
// below sigs.k8s.io/kind/pkg/cluster/ import the kubeadm config template kind patches.
module sigs.k8s.io/kind/pkg/cluster/kgfupconfigcheck

go 1.26

require sigs.k8s.io/kind v0.33.0

require (
	github.com/BurntSushi/toml v1.4.0 // indirect
	github.com/evanphx/json-patch/v5 v5.6.0 // indirect
	github.com/pelletier/go-toml v1.9.5 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	go.yaml.in/yaml/v3 v3.0.4 // indirect
	sigs.k8s.io/yaml v1.4.0 // indirect
)
