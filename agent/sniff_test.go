package agent

import (
	"bytes"
	"testing"
)

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want verdict
	}{
		{"", needMore},
		{"G", needMore},
		{"GET", needMore},
		{"GET ", isHTTP},
		{"GET / HTTP/1.1\r\n", isHTTP},
		{"DELETE /x", isHTTP},
		{"PROPFIND ", isHTTP},
		{"PRI * HTTP/2.", needMore},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", isHTTP},
		{"PRI * HTTP/1.1", notHTTP},
		{"get / HTTP/1.1", notHTTP},
		{"GETX", notHTTP},
		{"\x16\x03\x01", notHTTP}, // TLS
		{"SSH-2.0", notHTTP},
		{"PING\r\n", notHTTP},
		{"*1\r\n$4\r\nPING\r\n", notHTTP}, // Redis
	} {
		if got := sniff([]byte(tc.in)); got != tc.want {
			t.Errorf("sniff(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// FuzzSniff: sniff decides within sniffMax bytes, and more bytes never
// change a decision.
func FuzzSniff(f *testing.F) {
	for _, s := range httpStarts {
		f.Add(append(bytes.Clone(s), "/ HTTP/1.1\r\n"...))
	}
	f.Add([]byte("\x16\x03\x01\x02\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= sniffMax && sniff(b) == needMore {
			t.Fatalf("sniff(%q) undecided after %d bytes", b, len(b))
		}
		decided := needMore
		for i := range len(b) + 1 {
			v := sniff(b[:i])
			if decided != needMore && v != decided {
				t.Fatalf("sniff(%q) = %v, but its prefix %q gave %v", b[:i], v, b[:i-1], decided)
			}
			decided = v
		}
	})
}
