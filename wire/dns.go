package wire

import "strings"

// InDomains reports whether name is one of domains or below one, ignoring
// case and trailing dots: the daemon sends the manager only such queries,
// and the manager resolves only such names.
func InDomains(name string, domains []string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}
