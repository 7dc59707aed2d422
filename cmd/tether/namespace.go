package main

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
)

// namespaceUsage is the help of the --namespace flag of the commands that
// name workloads.
const namespaceUsage = "the workloads' Kubernetes namespace (default: the kubeconfig's current context's, else default)"

// workloadNamespace is the namespace a workload name is in: flag when
// given, else the namespace of the kubeconfig's current context
// (kubectl's loading rules: KUBECONFIG, ~/.kube/config), read without
// contacting the cluster, else "default".
func workloadNamespace(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{})
	ns, _, err := cc.Namespace()
	if err != nil && !clientcmd.IsEmptyConfig(err) {
		return "", fmt.Errorf("the namespace of the kubeconfig's current context: %w (give --namespace)", err)
	}
	if ns == "" {
		return "default", nil
	}
	return ns, nil
}
