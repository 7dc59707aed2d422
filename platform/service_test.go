package platform

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var testServiceConfig = ServiceConfig{
	Binary: "/usr/local/bin/tether",
	Args:   []string{"daemon", "--socket", "/run/tether-2/daemon.sock", "--tun-name", "tether%d"},
}

func TestSystemdUnit(t *testing.T) {
	unit := SystemdUnit(testServiceConfig)
	lines := strings.Split(unit, "\n")
	for _, want := range []string{
		`ExecStart=/usr/local/bin/tether daemon --socket /run/tether-2/daemon.sock --tun-name "tether%%d"`,
		"Type=notify",
		"NotifyAccess=main",
		"Restart=on-failure",
		"RestartSec=2",
		"WatchdogSec=30s",
		"KillSignal=SIGTERM",
		"TimeoutStopSec=15",
		"RuntimeDirectory=tether",
		"DeviceAllow=/dev/net/tun rw",
		"DevicePolicy=closed",
		"CapabilityBoundingSet=CAP_NET_ADMIN CAP_CHOWN CAP_NET_BIND_SERVICE",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"WantedBy=multi-user.target",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("unit lacks the line %q:\n%s", want, unit)
		}
	}
	// Each section once, in order.
	var sections []string
	for _, l := range lines {
		if strings.HasPrefix(l, "[") {
			sections = append(sections, l)
		}
	}
	if want := []string{"[Unit]", "[Service]", "[Install]"}; !slices.Equal(sections, want) {
		t.Errorf("sections %v, want %v", sections, want)
	}
}

func TestSystemdQuote(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "/usr/bin/tether", "/usr/bin/tether"},
		{"flag", "--socket=/run/x.sock", "--socket=/run/x.sock"},
		{"empty", "", `""`},
		{"space", "/opt/my tools/tether", `"/opt/my tools/tether"`},
		{"specifier", "tether%d", `"tether%%d"`},
		{"variable", "$HOME", `"$$HOME"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"semicolon", ";", `";"`},
		{"newline", "a\nb", `"a\nb"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := systemdQuote(tc.in); got != tc.want {
				t.Errorf("systemdQuote(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// TestSystemdAnalyzeVerify has systemd check the unit: unknown keys,
// malformed values, a wrong ExecStart.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian: apt-get install systemd); the unit is not verified")
	}
	// ExecStart must name an executable that exists: this test's binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testServiceConfig
	cfg.Binary = self
	path := filepath.Join(t.TempDir(), SystemdUnitName)
	if err := os.WriteFile(path, []byte(SystemdUnit(cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	// --man=no: no man pages here to check Documentation= against.
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	// verify also reports on units the host has installed; only lines about
	// this one count.
	var ours []string
	for l := range strings.Lines(string(out)) {
		if strings.Contains(l, SystemdUnitName) {
			ours = append(ours, strings.TrimSpace(l))
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	t.Logf("systemd-analyze verify %s: clean", path)
}

func TestLaunchdPlist(t *testing.T) {
	cfg := ServiceConfig{Binary: "/usr/local/bin/tether", Args: []string{"daemon", "--socket", "/tmp/a&b<c>.sock"}}
	doc := LaunchdPlist(cfg)
	top, err := parsePlist(doc)
	if err != nil {
		t.Fatalf("not a well-formed plist: %v\n%s", err, doc)
	}
	d, ok := top.(map[string]any)
	if !ok {
		t.Fatalf("top level is %T, want a dict", top)
	}
	if d["Label"] != LaunchdLabel {
		t.Errorf("Label = %v, want %s", d["Label"], LaunchdLabel)
	}
	want := append([]any{cfg.Binary}, []any{"daemon", "--socket", "/tmp/a&b<c>.sock"}...)
	if got, _ := d["ProgramArguments"].([]any); !slices.Equal(got, want) {
		t.Errorf("ProgramArguments = %q, want %q", got, want)
	}
	if d["RunAtLoad"] != true {
		t.Errorf("RunAtLoad = %v, want true", d["RunAtLoad"])
	}
	if ka, _ := d["KeepAlive"].(map[string]any); ka == nil || ka["SuccessfulExit"] != false {
		t.Errorf("KeepAlive = %v, want restart on failure (SuccessfulExit false)", d["KeepAlive"])
	}
	for key, want := range map[string]any{"ThrottleInterval": "2", "ExitTimeOut": "15", "StandardErrorPath": LaunchdLogPath} {
		if d[key] != want {
			t.Errorf("%s = %v, want %v", key, d[key], want)
		}
	}
}

// parsePlist decodes the property list doc into map[string]any (dict),
// []any (array), string (string, integer, real, date), bool.
func parsePlist(doc string) (any, error) {
	dec := xml.NewDecoder(strings.NewReader(doc))
	dec.Strict = true
	start, err := nextStart(dec)
	if err != nil {
		return nil, err
	}
	if start.Name.Local != "plist" {
		return nil, errors.New("root element is <" + start.Name.Local + ">, want <plist>")
	}
	v, end, err := plistValue(dec)
	if err != nil || end {
		return nil, errors.Join(err, errors.New("empty plist"))
	}
	if _, err := nextStart(dec); err != io.EOF && !errors.Is(err, errEnd) {
		return nil, errors.Join(err, errors.New("more than one value in the plist"))
	}
	return v, nil
}

var errEnd = errors.New("end element")

// nextStart returns the next start element, errEnd at an end element.
func nextStart(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return tok, nil
		case xml.EndElement:
			return xml.StartElement{}, errEnd
		case xml.CharData:
			if strings.TrimSpace(string(tok)) != "" {
				return xml.StartElement{}, errors.New("text outside an element: " + string(tok))
			}
		}
	}
}

// plistValue decodes the next value; end is true at the end of the
// enclosing array or dict.
func plistValue(dec *xml.Decoder) (v any, end bool, err error) {
	start, err := nextStart(dec)
	if errors.Is(err, errEnd) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	switch start.Name.Local {
	case "true", "false":
		return start.Name.Local == "true", false, dec.Skip()
	case "string", "integer", "real", "date", "key":
		var s string
		if err := dec.DecodeElement(&s, &start); err != nil {
			return nil, false, err
		}
		return s, false, nil
	case "array":
		var a []any
		for {
			e, end, err := plistValue(dec)
			if err != nil || end {
				return a, false, err
			}
			a = append(a, e)
		}
	case "dict":
		d := map[string]any{}
		for {
			k, end, err := plistValue(dec)
			if err != nil || end {
				return d, false, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, false, errors.New("dict key is not a <key>")
			}
			val, end, err := plistValue(dec)
			if err != nil || end {
				return nil, false, errors.Join(err, errors.New("dict key "+key+" without a value"))
			}
			d[key] = val
		}
	}
	return nil, false, errors.New("unknown plist element <" + start.Name.Local + ">")
}
