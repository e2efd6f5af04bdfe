// Package install holds no product code, only the tests of what users
// install: dist/install.yaml is what config/ renders to, the Dockerfile's
// build command builds, the manifest applies to a real kube-apiserver, and
// the ClusterRole grants the agent exactly what it needs (the agent's own
// reconciler runs under the ServiceAccount's identity).
package install
