package manager

import (
	"context"
	"fmt"
)

// WorkloadRef names a Kubernetes workload that intercepts and agents are
// for. Its key "Namespace/Name" is the workload string of the namespace
// lab.
type WorkloadRef struct {
	Namespace, Name string
	Kind            string // Deployment, StatefulSet or ReplicaSet
}

// Key is the workload's name in intercepts and agents: "namespace/name".
func (w WorkloadRef) Key() string { return w.Namespace + "/" + w.Name }

// Workload is a workload as its pod template and Services show it.
type Workload struct {
	WorkloadRef
	// Ports are the container ports that a Service selecting the workload
	// targets, the ports an intercept may name.
	Ports []WorkloadPort
}

// WorkloadPort is one container port of a workload and the Services that
// reach it.
type WorkloadPort struct {
	Port      uint16 // the container port
	Name      string // the container port's name; empty when unnamed
	Container string
	Services  []string // names of the Services whose targetPort selects it
	// Via are the Service ports that target it, for people: an intercept
	// names the container port, not the Service's.
	Via []ServicePort
}

// ServicePort is a port of a Service, "web:80".
type ServicePort struct {
	Service string
	Port    uint16
}

func (p ServicePort) String() string { return fmt.Sprintf("%s:%d", p.Service, p.Port) }

// Workloads finds the cluster's workloads. The manager asks it before an
// intercept changes anything, so that an unknown workload or port is
// refused with a clear error. Nil in the namespace lab, where workloads
// are the names agents declare.
type Workloads interface {
	// Resolve finds the Deployment, StatefulSet or ReplicaSet called name
	// in namespace; its error says what is missing.
	Resolve(ctx context.Context, namespace, name string) (Workload, error)
	// List returns the workloads of namespace that can be intercepted.
	List(ctx context.Context, namespace string) ([]Workload, error)
}

// Injector puts agents into a workload's pods (the admission webhook) and
// takes them out. Nil in the namespace lab, where agents are started by
// hand.
type Injector interface {
	// Check says why w's pod template cannot take an agent for ports,
	// before anything changes.
	Check(ctx context.Context, w Workload, ports []uint16) error
	// Inject makes w's pods run an agent serving ports (a rollout).
	Inject(ctx context.Context, w Workload, ports []uint16) error
	// RemoveAll takes every agent out and rolls the workloads back to
	// their pod templates from before the first intercept.
	RemoveAll(ctx context.Context) error
}
