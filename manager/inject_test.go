package manager

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// recordingInjector records the calls the manager makes and refuses what
// it is told to.
type recordingInjector struct {
	mu                       sync.Mutex
	checks, injects, removes []string // "ns/name ports"
	checkErr, injectErr      error
}

func (r *recordingInjector) record(to *[]string, w Workload, ports []uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*to = append(*to, strings.TrimSpace(w.Key()+" "+strings.Trim(fmt.Sprint(ports), "[]")))
}

func (r *recordingInjector) Check(_ context.Context, w Workload, ports []uint16) error {
	r.record(&r.checks, w, ports)
	return r.checkErr
}

func (r *recordingInjector) Inject(_ context.Context, w Workload, ports []uint16) error {
	r.record(&r.injects, w, ports)
	return r.injectErr
}

func (r *recordingInjector) RemoveAll(context.Context) error {
	r.record(&r.removes, Workload{}, nil)
	return nil
}

func TestInterceptInjectsAgents(t *testing.T) {
	for _, tc := range []struct {
		name                string
		checkErr, injectErr error
		wantCode            codes.Code
		wantErr             string
		wantInjects         []string
		wantIntercepts      int
	}{
		{name: "injected after creation", wantInjects: []string{"default/web 8080"}, wantIntercepts: 1},
		{name: "refused before anything changes", checkErr: errors.New("service web targets its port 8080 by number"),
			wantCode: codes.FailedPrecondition, wantErr: `intercept "a": service web targets its port 8080 by number`},
		{name: "removed again when the injection fails", injectErr: errors.New("conflict"),
			wantCode: codes.FailedPrecondition, wantErr: `intercept "a": the agents of default/web could not be injected: conflict`,
			wantInjects: []string{"default/web 8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, u := newInterceptServer(t)
			inj := &recordingInjector{checkErr: tc.checkErr, injectErr: tc.injectErr}
			s.injector = inj
			_, err := s.CreateIntercept(u["alice"], header("a", "alice", "alice"))
			if status.Code(err) != tc.wantCode || (tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("create: %v, want %s %q", err, tc.wantCode, tc.wantErr)
			}
			if !slices.Equal(inj.checks, []string{"default/web 8080"}) || !slices.Equal(inj.injects, tc.wantInjects) {
				t.Fatalf("checks %q injects %q, want one check and injects %q", inj.checks, inj.injects, tc.wantInjects)
			}
			if n := len(states(t, s, u["alice"])); n != tc.wantIntercepts {
				t.Fatalf("%d intercepts, want %d", n, tc.wantIntercepts)
			}
		})
	}
}

// A refused conflict changes no workload: the injection follows the
// conflict check.
func TestInterceptRefusedByConflictInjectsNothing(t *testing.T) {
	s, _, u := newInterceptServer(t)
	inj := &recordingInjector{}
	s.injector = inj
	if _, err := s.CreateIntercept(u["alice"], header("a", "alice", ".*")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIntercept(u["bob"], header("b", "bob", "bob")); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("conflicting intercept: %v", err)
	}
	if len(inj.injects) != 1 {
		t.Fatalf("injects %q: the refused intercept injected", inj.injects)
	}
}

// Removing every agent is authorized as revoke is.
func TestRemoveAgents(t *testing.T) {
	s, _, u := newInterceptServer(t)
	if _, err := s.RemoveAgents(u["alice"], &pb.RemoveAgentsRequest{}); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "webhook.port") {
		t.Fatalf("without an injector: %v", err)
	}
	inj := &recordingInjector{}
	s.injector = inj
	if _, err := s.RemoveAgents(u["bob"], &pb.RemoveAgentsRequest{}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "bob") {
		t.Fatalf("bob, without the configmap rights: %v", err)
	}
	if len(inj.removes) != 0 {
		t.Fatal("removed for bob")
	}
	if _, err := s.RemoveAgents(u["alice"], &pb.RemoveAgentsRequest{}); err != nil {
		t.Fatalf("alice, with get+update on configmap traffic-manager: %v", err)
	}
	if len(inj.removes) != 1 {
		t.Fatalf("removes %q", inj.removes)
	}
}
