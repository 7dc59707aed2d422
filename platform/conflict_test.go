package platform

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestOverlaps(t *testing.T) {
	// ifc builds an interface from "address/bits" strings the way net
	// reports them: IPv4 in 16 bytes with a 4 byte mask.
	ifc := func(name string, flags net.Flags, cidrs ...string) ifaceAddrs {
		var addrs []net.Addr
		for _, c := range cidrs {
			ip, ipn, err := net.ParseCIDR(c)
			if err != nil {
				t.Fatal(err)
			}
			addrs = append(addrs, &net.IPNet{IP: ip, Mask: ipn.Mask})
		}
		return ifaceAddrs{name: name, flags: flags, addrs: addrs}
	}
	host := []ifaceAddrs{
		ifc("lo", net.FlagUp|net.FlagLoopback, "127.0.0.1/8", "::1/128"),
		ifc("eth0", net.FlagUp, "198.18.1.10/24", "2001:db8:1::10/64", "fe80::1/64"),
		ifc("wlan0", net.FlagUp, "198.19.0.5/16"),
		ifc("tether0", net.FlagUp, "198.18.128.1/17"),
	}

	tests := []struct {
		name    string
		subnets []string
		except  string
		want    []string // substrings of the error; none means no error
	}{
		{
			name:    "contained",
			subnets: []string{"198.18.1.128/25"},
			except:  "tether0",
			want:    []string{"subnet 198.18.1.128/25 overlaps network 198.18.1.0/24 of interface eth0"},
		},
		{
			name:    "containing",
			subnets: []string{"198.18.0.0/16"},
			except:  "tether0",
			want:    []string{"subnet 198.18.0.0/16 overlaps network 198.18.1.0/24 of interface eth0"},
		},
		{
			name:    "disjoint",
			subnets: []string{"198.18.2.0/24", "198.18.64.0/18", "2001:db8:2::/64"},
			except:  "tether0",
		},
		{
			name:    "IPv6",
			subnets: []string{"2001:db8::/32"},
			except:  "tether0",
			want:    []string{"subnet 2001:db8::/32 overlaps network 2001:db8:1::/64 of interface eth0"},
		},
		{
			name:    "except dev",
			subnets: []string{"198.18.128.0/17"},
			except:  "tether0",
		},
		{
			name:    "not excepted",
			subnets: []string{"198.18.128.0/17"},
			except:  "tether1",
			want:    []string{"overlaps network 198.18.128.0/17 of interface tether0"},
		},
		{
			name:    "loopback skipped",
			subnets: []string{"127.0.0.0/16", "::1/128"},
			except:  "tether0",
		},
		{
			name:    "every conflict named",
			subnets: []string{"198.16.0.0/14"},
			except:  "tether0",
			want: []string{
				"overlaps network 198.18.1.0/24 of interface eth0",
				"overlaps network 198.19.0.0/16 of interface wlan0",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var subnets []netip.Prefix
			for _, s := range tt.subnets {
				subnets = append(subnets, netip.MustParsePrefix(s))
			}
			err := overlaps(subnets, connectedNetworks(host, tt.except))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("overlaps: %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("overlaps: no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("overlaps: %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPrefixOf(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		want string // "" means not a network
	}{
		{"IPv4 in 16 bytes", &net.IPNet{IP: net.ParseIP("198.18.3.4"), Mask: net.CIDRMask(24, 32)}, "198.18.3.0/24"},
		{"IPv4 in 4 bytes", &net.IPNet{IP: net.ParseIP("198.18.3.4").To4(), Mask: net.CIDRMask(24, 32)}, "198.18.3.0/24"},
		{"IPv4 with 16 byte mask", &net.IPNet{IP: net.ParseIP("198.18.3.4"), Mask: net.CIDRMask(120, 128)}, "198.18.3.0/24"},
		{"IPv6", &net.IPNet{IP: net.ParseIP("2001:db8::7"), Mask: net.CIDRMask(64, 128)}, "2001:db8::/64"},
		{"non-contiguous mask", &net.IPNet{IP: net.ParseIP("198.18.3.4"), Mask: net.IPv4Mask(255, 0, 255, 0)}, ""},
		{"not an IPNet", &net.IPAddr{IP: net.ParseIP("198.18.3.4")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := prefixOf(tt.addr)
			if tt.want == "" {
				if ok {
					t.Fatalf("prefixOf = %s, want none", p)
				}
				return
			}
			if !ok || p != netip.MustParsePrefix(tt.want) {
				t.Fatalf("prefixOf = %s, %v, want %s", p, ok, tt.want)
			}
		})
	}
}

// TestCheckConflictsHost runs against the host's real interfaces: a subnet
// that is surely nobody's (the IPv6 documentation range) must pass.
func TestCheckConflictsHost(t *testing.T) {
	if err := CheckConflicts([]netip.Prefix{netip.MustParsePrefix("2001:db8:ffff::/48")}, ""); err != nil {
		t.Fatalf("CheckConflicts: %v", err)
	}
}
