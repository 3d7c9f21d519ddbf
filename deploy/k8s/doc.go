// Package k8s holds the checks of likesd's Kubernetes manifests (the YAML
// files beside this one). It is its own module so that the k8s.io
// dependencies the checks decode into stay out of the service's go.mod.
package k8s
