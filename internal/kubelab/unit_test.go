package kubelab

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestFilterCgroupMounts(t *testing.T) {
	tests := []struct {
		name   string
		mounts string
		want   []string
	}{
		{"v1 hybrid with tmpfs", `sysfs /sys sysfs rw 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
tmpfs /run tmpfs rw 0 0`, []string{"/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}},
		{"unified only", `cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0
proc /proc proc rw 0 0`, []string{"/sys/fs/cgroup"}},
		{"a look-alike path is not a hierarchy", `cgroup /sys/fs/cgroupx cgroup rw,cpu 0 0`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range filterCgroupMounts(parseMounts(tt.mounts)) {
				got = append(got, m.point)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseMountsUnescapes(t *testing.T) {
	got := parseMounts(`/dev/vda /tmp/a\040b ext4 rw 0 0`)
	if len(got) != 1 || got[0].point != "/tmp/a b" {
		t.Fatalf("got %+v, want mount point %q", got, "/tmp/a b")
	}
}

func TestLeftovers(t *testing.T) {
	before := machineState{"netns": {"tether-kube-old"}, "process": {"1 etcd"}}
	after := machineState{"netns": {"tether-kube-old", "cni-1"}, "process": {"1 etcd"}, "cgroup": {"/sys/fs/cgroup/cpu/kubepods"}}
	want := []string{"cgroup /sys/fs/cgroup/cpu/kubepods", "netns cni-1"}
	if got := leftovers(before, after); !reflect.DeepEqual(got, want) {
		t.Fatalf("leftovers = %q, want %q", got, want)
	}
	if got := leftovers(after, before); len(got) != 0 {
		t.Fatalf("what went away is no leftover: %q", got)
	}
}

// The API server trusts client certificates by CA, user from CN and
// groups from O; its serving certificate must name every address a client
// uses, the in-cluster service IP included.
func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, err := newCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.issue(dir, "carol", "carol", []string{"tether-dev"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := ca.issue(dir, "apiserver", "kube-apiserver", nil, []net.IP{net.ParseIP(NodeAddr), net.ParseIP(APIService)}, []string{"kubernetes.default.svc"}); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	read := func(name string) *x509.Certificate {
		b, err := os.ReadFile(filepath.Join(dir, name+".crt"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := read("carol")
	if _, err := client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if client.Subject.CommonName != "carol" || !slices.Equal(client.Subject.Organization, []string{"tether-dev"}) {
		t.Errorf("client subject %v, want CN carol, O tether-dev", client.Subject)
	}
	server := read("apiserver")
	for _, host := range []string{NodeAddr, APIService, "kubernetes.default.svc"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
}
