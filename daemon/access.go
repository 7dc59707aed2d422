package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/tether-dev/tether/rpc/daemon"
)

// Who may use the daemon.
//
// The control socket is mode 0660, owned by root and the socket group
// (socket.group, default "tether", when that group exists; root's group
// otherwise): only root and members of the group can connect at all. Of
// those, the kernel tells the daemon each caller's uid (SO_PEERCRED on
// Linux, LOCAL_PEERCRED on macOS), and:
//
//  1. root and the daemon's own uid may always call;
//  2. while a session is up and has an owner, every other uid is refused
//     (PermissionDenied: "the tether daemon is in use by alice (uid 1000);
//     you are uid 1001"), whatever the call: status included;
//  3. otherwise (no session, or a session without owner) every caller
//     that reached the socket may call.
//
// The owner is set by a successful Connect that finds the session without
// owner: the caller's uid when it is not root; for root, the uid in
// MDForUID (the CLI sends SUDO_UID, so `sudo tether connect` makes the
// user who ran sudo the owner), and no owner without it. The owner is
// forgotten when the session ends (quit, ended by the manager): the next
// session belongs to whoever connects it. It lives beside the session
// cache (<socket>.owner), so a daemon that restarts and resumes the
// session by itself gives it back its owner; until the resumed session is
// up, there is no session, so rule 3 applies.
//
// Where the platform gives no peer credentials (see peerUID) the socket's
// permissions are the only check.

// MDForUID is the metadata key in which root's `tether connect` names the
// user it acts for (SUDO_UID). The daemon believes it only from root and
// its own uid.
const MDForUID = "tether-for-uid"

// peerInfo is the AuthInfo of a control connection: the peer's uid.
type peerInfo struct {
	credentials.CommonAuthInfo
	uid uint32
}

func (peerInfo) AuthType() string { return "unix-peercred" }

// peerCreds are the control socket's transport credentials: the bytes stay
// in the kernel, so there is nothing to encrypt, but the handshake records
// the peer's uid for authorize.
type peerCreds struct{}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peerCreds are for the daemon's side of the control socket only")
}

func (peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uid, ok, err := peerUID(c)
	if err != nil {
		return nil, nil, fmt.Errorf("control socket: reading the peer's credentials: %w", err)
	}
	if !ok {
		return c, nil, nil
	}
	return c, peerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}, uid: uid}, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (c peerCreds) Clone() credentials.TransportCredentials { return c }

func (peerCreds) OverrideServerName(string) error { return nil }

// callerUID is the uid of the peer of a control call; false when the
// platform does not say.
func callerUID(ctx context.Context) (uint32, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return 0, false
	}
	pi, ok := p.AuthInfo.(peerInfo)
	return pi.uid, ok
}

// owner is the user the current session belongs to.
type owner struct {
	// mu guards sess and uid. Connect holds it for writing while it
	// installs its session and claims it, every other call for reading
	// for the whole call: no call runs on a check that a Connect has made
	// stale, and none waits for a Connect's slow part. Taken before
	// Daemon.mu.
	mu   sync.RWMutex
	sess *session // the session uid owns; no owner unless it is Daemon.sess
	uid  uint32
}

// privileged reports whether uid may always call (rule 1).
func privileged(uid uint32) bool {
	return uid == 0 || int64(uid) == int64(os.Geteuid())
}

// checkLocked is the rule: caller may call unless cur has an owner who is
// someone else and caller is not privileged. It returns the refusal.
func (o *owner) checkLocked(cur *session, caller uint32) error {
	if privileged(caller) || cur == nil || o.sess != cur || o.uid == caller {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "the tether daemon is in use by %s (uid %d); you are uid %d", userName(o.uid), o.uid, caller)
}

// claimLocked makes uid the owner of cur unless cur has one already, and
// reports whether it did.
func (o *owner) claimLocked(cur *session, uid uint32) bool {
	if cur == nil || o.sess == cur {
		return false
	}
	o.sess, o.uid = cur, uid
	return true
}

// claimant is who becomes the owner when caller connects: caller, or for
// a privileged caller the user it acts for (MDForUID); false for nobody.
func claimant(ctx context.Context, caller uint32) (uint32, bool) {
	if !privileged(caller) {
		return caller, true
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(MDForUID); len(v) > 0 {
		if uid, err := strconv.ParseUint(v[0], 10, 32); err == nil && !privileged(uint32(uid)) {
			return uint32(uid), true
		}
	}
	return 0, false
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return "an unknown user"
}

// current is the session now, nil when there is none.
func (d *Daemon) current() *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sess
}

// authorize applies the rule above to every control call and makes the
// caller of a successful Connect the session's owner when it has none.
func (d *Daemon) authorize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	caller, known := callerUID(ctx)
	if !known {
		return handler(ctx, req)
	}
	o := &d.owner
	o.mu.RLock()
	err := o.checkLocked(d.current(), caller)
	if err != nil {
		o.mu.RUnlock()
		d.log.Warn("control call refused", "method", info.FullMethod, "uid", caller, "owner_uid", o.uid)
		return nil, err
	}
	if info.FullMethod == pb.Daemon_Connect_FullMethodName {
		// Connect may take long: it checks again, and claims, when it
		// installs its session (Daemon.connect).
		o.mu.RUnlock()
		return handler(ctx, req)
	}
	defer o.mu.RUnlock()
	return handler(ctx, req)
}

// claimLocked makes the caller of the Connect in ctx the owner of s, the
// session it just installed (owner.mu held for writing).
func (d *Daemon) claimLocked(ctx context.Context, s *session) {
	caller, known := callerUID(ctx)
	if !known {
		return
	}
	if uid, ok := claimant(ctx, caller); ok && d.owner.claimLocked(s, uid) {
		d.log.Info("session owner", "uid", uid, "user", userName(uid))
		d.saveOwner(uid)
	}
}

// restoreOwnerLocked gives the session a restarted daemon resumed, s, the
// owner it had (owner.mu held for writing).
func (d *Daemon) restoreOwnerLocked(s *session) {
	b, err := os.ReadFile(d.ownerPath())
	if err != nil {
		return
	}
	uid, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		d.log.Warn("ignoring a bad owner file", "path", d.ownerPath(), "error", err)
		return
	}
	if d.owner.claimLocked(s, uint32(uid)) {
		d.log.Info("session owner restored", "uid", uid, "user", userName(uint32(uid)))
	}
}

func (d *Daemon) ownerPath() string { return d.cfg.Socket + ".owner" }

func (d *Daemon) saveOwner(uid uint32) {
	if err := os.WriteFile(d.ownerPath(), []byte(strconv.FormatUint(uint64(uid), 10)+"\n"), 0o600); err != nil {
		d.log.Warn("cannot save the session owner; a restarted daemon will resume without one", "error", err)
	}
}

// authorizeStream applies the rule to streaming calls when they start
// (there are none yet: so that one added later is not left open). A
// stream may live long, so it does not hold owner.mu.
func (d *Daemon) authorizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if caller, known := callerUID(ss.Context()); known {
		d.owner.mu.RLock()
		err := d.owner.checkLocked(d.current(), caller)
		d.owner.mu.RUnlock()
		if err != nil {
			d.log.Warn("control call refused", "method", info.FullMethod, "uid", caller)
			return err
		}
	}
	return handler(srv, ss)
}
