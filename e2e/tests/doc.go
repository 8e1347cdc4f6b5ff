// Package tests holds Ferry's end-to-end tests. They run against the cluster
// started by e2e/cluster/up and read its KUBECONFIG from the environment.
package tests
