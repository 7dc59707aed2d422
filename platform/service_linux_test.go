package platform

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeService returns a Service whose unit lives in a temporary directory
// and which records the commands it would run instead of running them:
// nothing on this machine is installed, enabled or started.
func fakeService(t *testing.T) (s *Service, out *bytes.Buffer, ran *[]string) {
	t.Helper()
	out, ran = &bytes.Buffer{}, &[]string{}
	s = NewService(testServiceConfig, out)
	s.path = filepath.Join(t.TempDir(), SystemdUnitName)
	s.preflight = nil
	s.run = func(name string, args ...string) error {
		*ran = append(*ran, strings.Join(append([]string{name}, args...), " "))
		return nil
	}
	return s, out, ran
}

func TestServiceDryRun(t *testing.T) {
	s, out, ran := fakeService(t)
	s.preflight = func() error { return errors.New("a dry run must not check for root") }
	s.writeFile = func(string, []byte, os.FileMode) error {
		t.Error("a dry run wrote a file")
		return nil
	}

	if err := s.Install(true); err != nil {
		t.Fatalf("Install(dry run): %v", err)
	}
	for _, want := range []string{
		"would: write " + s.path + " (mode 0644)\n",
		"    ExecStart=/usr/local/bin/tether daemon --socket /run/tether-2/daemon.sock --tun-name \"tether%%d\"\n",
		"would: systemctl daemon-reload\nwould: systemctl enable tether.service\nwould: systemctl restart tether.service\n",
		"dry run: nothing was changed\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("install dry run lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(s.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("install dry run: the unit file exists (%v)", err)
	}

	out.Reset()
	if err := s.Uninstall(true); err != nil {
		t.Fatalf("Uninstall(dry run), not installed: %v", err)
	}
	if want := "not installed: there is no " + s.path + "\n"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("uninstall dry run without a unit = %q, want %q first", out, want)
	}

	const unit = "[Service]\nExecStart=/bin/true\n"
	if err := os.WriteFile(s.path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := s.Uninstall(true); err != nil {
		t.Fatalf("Uninstall(dry run): %v", err)
	}
	want := "would: systemctl disable --now tether.service\nwould: remove " + s.path + "\nwould: systemctl daemon-reload\ndry run: nothing was changed\n"
	if out.String() != want {
		t.Errorf("uninstall dry run printed\n%s\nwant\n%s", out, want)
	}
	if b, err := os.ReadFile(s.path); err != nil || string(b) != unit {
		t.Errorf("uninstall dry run changed the unit file: %q, %v", b, err)
	}
	if len(*ran) > 0 {
		t.Errorf("dry runs ran %q", *ran)
	}
}

// TestServiceInstallUninstall takes the real steps, with the unit in a
// temporary directory and systemctl recorded, not run.
func TestServiceInstallUninstall(t *testing.T) {
	s, out, ran := fakeService(t)
	if err := s.Install(false); err != nil {
		t.Fatalf("Install: %v\n%s", err, out)
	}
	b, err := os.ReadFile(s.path)
	if err != nil || string(b) != SystemdUnit(testServiceConfig) {
		t.Errorf("unit file = %q, %v; want SystemdUnit's", b, err)
	}
	if fi, err := os.Stat(s.path); err == nil && fi.Mode().Perm() != 0o644 {
		t.Errorf("unit file mode %v, want 0644", fi.Mode().Perm())
	}
	if want := []string{"systemctl daemon-reload", "systemctl enable tether.service", "systemctl restart tether.service"}; !slices.Equal(*ran, want) {
		t.Errorf("install ran %q, want %q", *ran, want)
	}
	if strings.Contains(out.String(), "[Service]") {
		t.Errorf("install printed the unit; only dry runs do:\n%s", out)
	}

	// A unit systemd cannot stop is removed all the same.
	*ran = nil
	s.run = func(name string, args ...string) error {
		*ran = append(*ran, strings.Join(append([]string{name}, args...), " "))
		if slices.Contains(args, "disable") {
			return errors.New("Unit tether.service not loaded.")
		}
		return nil
	}
	out.Reset()
	if err := s.Uninstall(false); err != nil {
		t.Fatalf("Uninstall: %v\n%s", err, out)
	}
	if _, err := os.Stat(s.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the unit file is still there after Uninstall (%v)", err)
	}
	if want := []string{"systemctl disable --now tether.service", "systemctl daemon-reload"}; !slices.Equal(*ran, want) {
		t.Errorf("uninstall ran %q, want %q", *ran, want)
	}
	if !strings.Contains(out.String(), "(failed, carrying on: Unit tether.service not loaded.)") {
		t.Errorf("uninstall did not report the failed stop:\n%s", out)
	}

	// Again: nothing left to do.
	*ran = nil
	if err := s.Uninstall(false); err != nil || len(*ran) > 0 {
		t.Errorf("second Uninstall: %v, ran %q", err, *ran)
	}
}

func TestServiceInstallFails(t *testing.T) {
	s, _, _ := fakeService(t)
	s.run = func(name string, args ...string) error { return errors.New("boom") }
	err := s.Install(false)
	if err == nil || !strings.Contains(err.Error(), "systemctl daemon-reload: boom") {
		t.Errorf("Install with a failing systemctl: %v, want the command and its error", err)
	}

	s.cfg.Binary = "tether"
	if err := s.Install(true); err == nil {
		t.Error("Install accepted a relative binary path")
	}
	s.preflight = func() error { return errors.New("needs root") }
	s.cfg.Binary = "/usr/bin/tether"
	if err := s.Install(false); err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("Install as non-root: %v", err)
	}
}
