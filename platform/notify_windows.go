package platform

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/windows/svc"
)

// Notifier tells the service manager that started the daemon how it is
// doing. On Windows, when the daemon runs as a service, that is the service
// control manager (SCM): the Notifier runs the service's control handler,
// reports start, running and stop, and turns the SCM's stop and shutdown
// requests into a call of stop. Outside the SCM every method does nothing.
//
// NewNotifier → Ready → Stopping → Close.
type Notifier struct {
	log  *slog.Logger
	stop func()

	readyOnce, stoppingOnce, closeOnce sync.Once
	ready, stopping, closing           chan struct{} // closed by Ready, Stopping, Close
	stopAsked                          atomic.Bool   // the SCM asked the daemon to stop
	done                               chan struct{} // closed when svc.Run returns; nil outside the SCM
}

// NewNotifier returns the Notifier of this process. When the process is a
// Windows service, stop is called when the SCM asks it to stop; it should
// make the daemon shut down as SIGTERM does elsewhere.
func NewNotifier(log *slog.Logger, stop func()) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{log: log.With("component", "notify"), stop: stop,
		ready: make(chan struct{}), stopping: make(chan struct{}), closing: make(chan struct{})}
	isService, err := svc.IsWindowsService()
	if err != nil {
		n.log.Warn("cannot tell whether this is a Windows service; assuming not", "error", err)
		return n
	}
	if !isService {
		return n
	}
	n.done = make(chan struct{})
	go func() {
		defer close(n.done)
		if err := svc.Run(WindowsServiceName, n); err != nil {
			n.log.Error("running as a Windows service failed", "error", err)
		}
	}()
	return n
}

// Ready tells the SCM that the daemon serves: the service is running.
func (n *Notifier) Ready() error {
	n.readyOnce.Do(func() { close(n.ready) })
	return nil
}

// Stopping tells the SCM that the daemon is shutting down.
func (n *Notifier) Stopping() error {
	n.stoppingOnce.Do(func() { close(n.stopping) })
	return nil
}

// Close reports the service stopped and waits until the SCM has been told.
// A daemon that ends before the SCM asked it to stop has failed (exit code
// 1), so the SCM's recovery actions restart it. Idempotent.
func (n *Notifier) Close() error {
	n.closeOnce.Do(func() { close(n.closing) })
	if n.done != nil {
		<-n.done
	}
	return nil
}

// Execute implements svc.Handler; svc.Run calls it in its own goroutine.
func (n *Notifier) Execute(_ []string, reqs <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	const accepts = svc.AcceptStop | svc.AcceptShutdown
	status <- svc.Status{State: svc.StartPending}
	ready, stopping := n.ready, n.stopping
	for {
		select {
		case <-ready:
			ready = nil
			status <- svc.Status{State: svc.Running, Accepts: accepts}
		case <-stopping:
			stopping, ready = nil, nil
			status <- svc.Status{State: svc.StopPending}
		case r := <-reqs:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				if !n.stopAsked.Swap(true) {
					n.log.Info("the service control manager asks the daemon to stop")
					if n.stop != nil {
						n.stop()
					}
				}
			}
		case <-n.closing:
			if n.stopAsked.Load() {
				return false, 0
			}
			return true, 1
		}
	}
}
