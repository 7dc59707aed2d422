package daemon

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckRoutes(t *testing.T) {
	floor := routeFloor{v4: DefaultMinPrefixLength, v6: DefaultMinPrefixLengthIPv6}
	eighths := make([]string, 256)
	for i := range eighths {
		eighths[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(i)}), 8).String()
	}
	for _, tc := range []struct {
		name    string
		subnets []string
		floor   routeFloor
		wantErr string // "" for allowed
	}{
		{"a cluster", []string{"10.96.0.0/12", "10.244.0.0/16"}, floor, ""},
		{"the floor itself", []string{"10.0.0.0/8"}, floor, ""},
		{"IPv6 at its floor", []string{"2001:db8::/32", "fd00:10:244::/56"}, floor, ""},
		{"wider than the floor", []string{"10.0.0.0/7"}, floor, "wider than /8 (routes.minPrefixLength)"},
		{"half the internet", []string{"0.0.0.0/1"}, floor, "0.0.0.0/1, wider than /8"},
		{"the default route in halves", []string{"0.0.0.0/1", "128.0.0.0/1"}, routeFloor{v4: 1, v6: 1}, "cover every IPv4 address"},
		{"the default route in 256 /8s", eighths, floor, "[0.0.0.0/8 1.0.0.0/8 2.0.0.0/8 3.0.0.0/8] and 252 more, which together cover every IPv4 address"},
		{"255 of 256 /8s leave a gap", eighths[1:], floor, ""},
		{"overlapping pieces covering everything", []string{"0.0.0.0/2", "0.0.0.0/1", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2"}, routeFloor{v4: 1, v6: 1}, "cover every IPv4 address"},
		{"a gap in the middle", []string{"0.0.0.0/2", "128.0.0.0/1"}, routeFloor{v4: 1, v6: 1}, ""},
		{"IPv6 wider than its floor", []string{"2001::/16"}, floor, "wider than /32 (routes.minPrefixLengthIPv6)"},
		{"the IPv6 default route in halves", []string{"::/1", "8000::/1"}, routeFloor{v4: 1, v6: 1}, "cover every IPv6 address"},
		{"IPv4 halves do not cover IPv6", []string{"0.0.0.0/1", "::/1"}, routeFloor{v4: 1, v6: 1}, ""},
		{"a lowered floor", []string{"10.0.0.0/7"}, routeFloor{v4: 7, v6: 32}, ""},
		{"host routes", []string{"198.18.2.254/32", "2001:db8::1/128"}, floor, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRoutes(prefixesOf(t, tc.subnets), tc.floor)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func prefixesOf(t testing.TB, ss []string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// FuzzSubnetSet feeds the parser and the route rules arbitrary sets: they
// never panic, coversAll agrees with a slow, obvious oracle, and a set
// checkRoutes accepts has no prefix below the floor and leaves some address
// of each family unrouted.
func FuzzSubnetSet(f *testing.F) {
	for _, seed := range []string{
		"10.96.0.0/12,10.244.0.0/16",
		"0.0.0.0/1,128.0.0.0/1",
		"::/1,8000::/1",
		"0.0.0.0/0",
		"198.18.2.7/24,::ffff:198.18.0.0/112",
		"0.0.0.0/2,64.0.0.0/2,128.0.0.0/2,192.0.0.0/2",
		"0.0.0.0/2,128.0.0.0/1,64.0.0.0/3",
		"garbage,/,1.2.3.4/33",
	} {
		f.Add(seed, uint8(8), uint8(32))
	}
	f.Fuzz(func(t *testing.T, set string, f4, f6 uint8) {
		floor := routeFloor{v4: 1 + int(f4)%32, v6: 1 + int(f6)%128}
		subnets, err := parseSubnets(strings.Split(set, ","))
		if err != nil {
			return
		}
		var v4, v6 []netip.Prefix
		for _, p := range subnets {
			if p.Addr().Is4() {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
		all := map[bool]netip.Prefix{true: netip.MustParsePrefix("0.0.0.0/0"), false: netip.MustParsePrefix("::/0")}
		covered := false
		for _, fam := range [][]netip.Prefix{v4, v6} {
			if len(fam) == 0 {
				continue
			}
			want := naiveCovers(all[fam[0].Addr().Is4()], fam)
			if got := coversAll(fam); got != want {
				t.Fatalf("coversAll(%v) = %v, the oracle says %v", fam, got, want)
			}
			covered = covered || want
		}
		if checkRoutes(subnets, floor) != nil {
			return
		}
		if covered {
			t.Fatalf("accepted %v, which covers a whole family", subnets)
		}
		for _, p := range subnets {
			if min := floor.v6; p.Addr().Is4() && p.Bits() < floor.v4 || !p.Addr().Is4() && p.Bits() < min {
				t.Fatalf("accepted %s below the floor %+v", p, floor)
			}
		}
	})
}

// naiveCovers reports whether set covers space: one prefix holds it, or
// both its halves are covered.
func naiveCovers(space netip.Prefix, set []netip.Prefix) bool {
	overlap := false
	for _, p := range set {
		if p.Bits() <= space.Bits() && p.Contains(space.Addr()) {
			return true
		}
		overlap = overlap || p.Overlaps(space)
	}
	if !overlap || space.Bits() == space.Addr().BitLen() {
		return false
	}
	left := netip.PrefixFrom(space.Addr(), space.Bits()+1)
	right := netip.PrefixFrom(lastAddr(left).Next(), space.Bits()+1)
	return naiveCovers(left, set) && naiveCovers(right, set)
}
