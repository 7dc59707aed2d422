// Package kubelab runs a real single-node Kubernetes cluster for tests and
// for people: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// containerd, kubelet, kube-proxy and CoreDNS, built from source by
// make kube-bins, all inside one network namespace of their own that the
// host reaches through one veth. The host's routes and iptables stay
// untouched; every address is from 198.18.0.0/15.
//
// A second namespace, the "laptop", reaches the API server but not the pod
// or service networks, as a developer's machine outside the cluster would.
//
// All state lives in one directory (Dir). Up first removes what a previous
// run in the same directory left behind, records what existed on the
// machine before it starts anything, and Down removes what it created:
// pods through CRI, processes, shims, mounts, the kubepods cgroups, the
// network namespaces with the bridge and their iptables rules, and the
// files kubelet and containerd leave outside Dir. Down is idempotent and
// works from the directory alone, so a crashed or interrupted run is
// cleaned by the next Up or by make kube-down.
package kubelab
