package daemon

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseSubnets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		want    []netip.Prefix
		wantErr string
	}{
		{"masked", []string{"198.18.2.7/24"}, []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}, ""},
		{"v4 and v6", []string{"198.18.2.0/24", "2001:db8::/64"}, []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24"), netip.MustParsePrefix("2001:db8::/64")}, ""},
		{"none", nil, nil, "no subnets"},
		{"garbage", []string{"198.18.2.0"}, nil, `bad subnet "198.18.2.0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSubnets(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !equalPrefixes(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestCheckManagerOutside(t *testing.T) {
	subnets := []netip.Prefix{netip.MustParsePrefix("198.18.2.0/24")}
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"198.18.1.2:8081", true},
		{"198.18.2.9:8081", false},
		{"[::ffff:198.18.2.9]:8081", false},
		{"manager.example:8081", true}, // a name: gRPC resolves it
	} {
		err := checkManagerOutside(tc.addr, subnets)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

func TestResumeRefusal(t *testing.T) {
	const ttl = 24 * time.Hour
	rec := activityRecord{AtMs: (10 * time.Hour).Milliseconds(), TTLMs: ttl.Milliseconds()}
	for _, tc := range []struct {
		name     string
		rec      activityRecord
		ok, same bool
		now      time.Duration // boot clock
		want     string        // in the refusal; "" for a resume
	}{
		{"same boot, idle within the TTL", rec, true, true, 20 * time.Hour, ""},
		{"same boot, idle beyond the TTL (slept through it)", rec, true, true, 35 * time.Hour, "inactive for 24h0m0s (grpc.connectionTTL), last activity 25h0m0s ago"},
		{"no record", activityRecord{}, false, false, time.Hour, "not recorded"},
		{"another boot: the reading means nothing", rec, true, false, 11 * time.Hour, "machine restarted"},
		{"reading from the future (another boot)", rec, true, true, 9 * time.Hour, "machine restarted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resumeRefusal(tc.rec, tc.ok, tc.same, tc.now)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("refusal %q, want %q", got, tc.want)
			}
		})
	}
}
