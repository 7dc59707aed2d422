package manager

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tether-dev/tether/internal/netlab"
	pb "github.com/tether-dev/tether/rpc/manager"
	"github.com/tether-dev/tether/wire"
)

// fuzzCalls are the unary RPCs the fuzzer calls: a new RPC is one row.
var fuzzCalls = []struct {
	name string
	req  func() proto.Message
	call func(context.Context, pb.ManagerClient, proto.Message) (proto.Message, error)
}{
	{"Arrive", func() proto.Message { return &pb.ArriveRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.Arrive(ctx, m.(*pb.ArriveRequest))
	}},
	{"Depart", func() proto.Message { return &pb.DepartRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.Depart(ctx, m.(*pb.DepartRequest))
	}},
	{"Report", func() proto.Message { return &pb.ReportRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.Report(ctx, m.(*pb.ReportRequest))
	}},
	{"Sessions", func() proto.Message { return &pb.SessionsRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.Sessions(ctx, m.(*pb.SessionsRequest))
	}},
	{"Resolve", func() proto.Message { return &pb.ResolveRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.Resolve(ctx, m.(*pb.ResolveRequest))
	}},
	{"CreateIntercept", func() proto.Message { return &pb.CreateInterceptRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.CreateIntercept(ctx, m.(*pb.CreateInterceptRequest))
	}},
	{"RemoveIntercept", func() proto.Message { return &pb.RemoveInterceptRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.RemoveIntercept(ctx, m.(*pb.RemoveInterceptRequest))
	}},
	{"ListIntercepts", func() proto.Message { return &pb.ListInterceptsRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.ListIntercepts(ctx, m.(*pb.ListInterceptsRequest))
	}},
	{"RevokeIntercept", func() proto.Message { return &pb.RevokeInterceptRequest{} }, func(ctx context.Context, c pb.ManagerClient, m proto.Message) (proto.Message, error) {
		return c.RevokeIntercept(ctx, m.(*pb.RevokeInterceptRequest))
	}},
}

// fuzzTokens: alice may revoke (fuzzAuthz), bob may not, and the agent
// holds an agent's credential and no session.
var fuzzTokens = Tokens{
	"tok-alice": {User: "alice", UID: "1"},
	"tok-bob":   {User: "bob", UID: "2", Groups: []string{"dev"}},
	"tok-agent": {User: "agent-web", UID: "3", Groups: []string{"tether:agents"}},
}

var fuzzAuthz = allowUsers{"alice": true}

// fuzzCaller is who makes a call: a token and, for a user with a session,
// its credentials.
type fuzzCaller struct {
	name, token string
	session     bool   // carries the credentials of its session
	badSecret   bool   // ... with a wrong secret
	id, secret  string // the session, set by fuzzWorld.reset
}

func (c *fuzzCaller) ctx(ctx context.Context) context.Context {
	md := metadata.MD{}
	if c.token != "" {
		md.Set(wire.MDAuthorization, "Bearer "+c.token)
	}
	if c.session {
		secret := c.secret
		if c.badSecret {
			secret += "x"
		}
		md.Set(wire.MDSession, c.id)
		md.Set(wire.MDSecret, secret)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// fuzzWorld is a manager with two users, each with a session and an
// intercept, and the state to compare calls against.
type fuzzWorld struct {
	m       *grpcManager
	callers []*fuzzCaller
	base    fuzzState
}

func newFuzzWorld(tb testing.TB) *fuzzWorld {
	tb.Helper()
	// Cluster names resolve at a loopback DNS server: the fuzzer sends no
	// query off the machine.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(netlab.ServeDNS(pc, map[string]netip.Addr{"web.default.svc.cluster.local.": netip.MustParseAddr("198.18.2.2")}))
	m := startGRPC(tb, Config{Authenticator: fuzzTokens, Authorizer: fuzzAuthz, DNSServer: pc.LocalAddr().String(),
		Subnets: []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}})
	alice := &fuzzCaller{name: "alice", token: "tok-alice", session: true}
	bob := &fuzzCaller{name: "bob", token: "tok-bob", session: true}
	w := &fuzzWorld{m: m, callers: []*fuzzCaller{
		alice, bob,
		{name: "agent", token: "tok-agent"},
		{name: "anonymous"},
		{name: "alice with a wrong secret", token: "tok-alice", session: true, badSecret: true},
	}}
	w.reset(tb)
	return w
}

// reset brings the manager back to the base state: every session ended
// and forgotten, then alice and bob arrive and each creates an intercept.
func (w *fuzzWorld) reset(tb testing.TB) {
	tb.Helper()
	s := w.m.s
	s.mu.Lock()
	for _, sess := range s.sessions {
		s.endLocked(sess, "fuzz reset", s.now())
	}
	clear(s.ended)
	s.mu.Unlock()
	ctx := context.Background()
	for i, c := range w.callers[:2] {
		resp, err := w.m.client.Arrive(c.ctx(ctx), &pb.ArriveRequest{User: c.name, Host: c.name + "-laptop", DaemonInstance: "d-" + c.name})
		if err != nil {
			tb.Fatal(err)
		}
		c.id, c.secret = resp.SessionId, resp.SessionSecret
		spec := &pb.InterceptSpec{Name: "base", Workload: "default/web", Port: uint32(8080 + i), Kind: pb.InterceptKind_HTTP,
			Headers: map[string]string{"x-user": c.name}}
		if _, err := w.m.client.CreateIntercept(c.ctx(ctx), &pb.CreateInterceptRequest{Spec: spec}); err != nil {
			tb.Fatal(err)
		}
	}
	w.callers[4].id, w.callers[4].secret = w.callers[0].id, w.callers[0].secret
	w.base = w.state()
}

// fuzzState is what a refused call must leave as it was.
type fuzzState struct {
	sessions   map[string]string // id -> user, notices
	intercepts map[string]string // id -> owner, name, state, message
	ended      int
	pending    int
	agents     int
}

func (w *fuzzWorld) state() fuzzState {
	s := w.m.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := fuzzState{sessions: map[string]string{}, intercepts: map[string]string{}, ended: len(s.ended), pending: len(s.pending), agents: len(s.agents)}
	for id, sess := range s.sessions {
		st.sessions[id] = fmt.Sprintf("%s notices=%q", sess.user, sess.notices)
	}
	for id, x := range s.intercepts {
		st.intercepts[id] = fmt.Sprintf("%s %s %s %q", x.owner.id, x.spec.Name, x.state, x.message)
	}
	return st
}

func (a fuzzState) equal(b fuzzState) bool {
	return maps.Equal(a.sessions, b.sessions) && maps.Equal(a.intercepts, b.intercepts) &&
		a.ended == b.ended && a.pending == b.pending && a.agents == b.agents
}

// Fuzz modes.
const (
	fuzzFill   = 1 << iota // build the request from the bytes field by field, not proto.Unmarshal
	fuzzTarget             // point ids and names at live sessions and intercepts
)

// FuzzManagerRPC calls the manager's unary RPCs over a real gRPC
// connection, as each of several callers, with requests decoded from the
// input (proto.Unmarshal, or field by field for shapes random bytes
// rarely reach, optionally aimed at live sessions and intercepts). The
// manager must not panic or hang, must keep answering, and a refused call
// must leave no trace: sessions, intercepts and their states, notices,
// ended sessions, pending flows and agents are as before.
func FuzzManagerRPC(f *testing.F) {
	for i := range fuzzCalls {
		for caller := range 5 {
			f.Add(uint8(i), uint8(caller), uint8(0), []byte{})
		}
	}
	w := newFuzzWorld(f)
	f.Fuzz(func(t *testing.T, call, caller, mode uint8, msg []byte) {
		c := fuzzCalls[int(call)%len(fuzzCalls)]
		who := w.callers[int(caller)%len(w.callers)]
		req := c.req()
		if mode&fuzzFill != 0 || proto.Unmarshal(msg, req) != nil {
			proto.Reset(req)
			fill(req.ProtoReflect(), bytes.NewReader(msg), 0)
		}
		if mode&fuzzTarget != 0 {
			w.aim(req, msg)
		}
		before := w.state()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := c.call(who.ctx(ctx), w.m.client, req)
		switch code := status.Code(err); code {
		case codes.OK:
		case codes.DeadlineExceeded, codes.Internal, codes.Unknown:
			t.Fatalf("%s by %s with %v: %v", c.name, who.name, req, err)
		default:
			if after := w.state(); !after.equal(before) {
				t.Fatalf("%s by %s with %v was refused (%v) but changed the manager:\nbefore %+v\nafter  %+v", c.name, who.name, req, err, before, after)
			}
		}
		// Still answering: bob's session, or the news that it ended.
		if _, err := w.m.client.ListIntercepts(w.callers[1].ctx(ctx), &pb.ListInterceptsRequest{}); err != nil && status.Code(err) != codes.NotFound {
			t.Fatalf("after %s by %s with %v (answer %v, %v), the manager stopped answering: %v", c.name, who.name, req, resp, err, err)
		}
		if !w.state().equal(w.base) {
			w.reset(t)
		}
	})
}

// aim points the request's ids and names at live targets, chosen by the
// input: other users' intercepts and sessions are what a hostile caller
// would try.
func (w *fuzzWorld) aim(req proto.Message, msg []byte) {
	pick := 0
	if len(msg) > 0 {
		pick = int(msg[0])
	}
	s := w.m.s
	s.mu.Lock()
	ids := slices.Sorted(maps.Keys(s.intercepts))
	s.mu.Unlock()
	sess := w.callers[pick%2]
	switch r := req.(type) {
	case *pb.RevokeInterceptRequest:
		if len(ids) > 0 {
			r.Id = ids[pick%len(ids)]
		}
	case *pb.RemoveInterceptRequest:
		r.Name = "base"
	case *pb.ArriveRequest:
		r.ResumeSessionId = sess.id
		if pick&4 == 0 {
			r.ResumeSessionSecret = sess.secret
		}
	case *pb.CreateInterceptRequest:
		if r.Spec == nil {
			r.Spec = &pb.InterceptSpec{}
		}
		r.Spec.Workload = "default/web"
		if pick&8 == 0 {
			r.Spec.Name = "base"
		}
	}
}

// fill sets m's fields from r, a few bytes per field, recursing into
// messages, maps and lists: requests with a structure proto.Unmarshal
// rarely builds from random bytes. Strings are made valid UTF-8, which
// the client's codec insists on.
func fill(m protoreflect.Message, r *bytes.Reader, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		if b&1 == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range int(b>>1) % 8 {
				k, v := fillScalar(fd.MapKey(), r), fillScalar(fd.MapValue(), r)
				if k.IsValid() && v.IsValid() {
					mp.Set(k.MapKey(), v)
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range int(b>>1) % 8 {
				if fd.Kind() == protoreflect.MessageKind {
					if depth < 3 {
						e := l.NewElement()
						fill(e.Message(), r, depth+1)
						l.Append(e)
					}
				} else if v := fillScalar(fd, r); v.IsValid() {
					l.Append(v)
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth < 3 {
				fill(m.Mutable(fd).Message(), r, depth+1)
			}
		default:
			if v := fillScalar(fd, r); v.IsValid() {
				m.Set(fd, v)
			}
		}
	}
}

// fillScalar reads one value of fd's kind; invalid once r is empty.
func fillScalar(fd protoreflect.FieldDescriptor, r *bytes.Reader) protoreflect.Value {
	var u [8]byte
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind:
		n, err := r.ReadByte()
		if err != nil {
			return protoreflect.Value{}
		}
		b := make([]byte, int(n))
		k, _ := r.Read(b)
		if fd.Kind() == protoreflect.BytesKind {
			return protoreflect.ValueOfBytes(b[:k])
		}
		return protoreflect.ValueOfString(strings.ToValidUTF8(string(b[:k]), "?"))
	case protoreflect.BoolKind:
		b, err := r.ReadByte()
		if err != nil {
			return protoreflect.Value{}
		}
		return protoreflect.ValueOfBool(b&1 == 1)
	case protoreflect.EnumKind:
		b, err := r.ReadByte()
		if err != nil {
			return protoreflect.Value{}
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(int8(b)))
	}
	if _, err := r.Read(u[:]); err != nil {
		return protoreflect.Value{}
	}
	x := binary.LittleEndian.Uint64(u[:])
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(x))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(x))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(x))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(x)
	}
	return protoreflect.Value{}
}
