package tunnel

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// split cuts b into a BufferSlice of pieces of at most n bytes, as gRPC
// hands over a message received in several HTTP/2 frames.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > n {
		s = append(s, mem.SliceBuffer(b[:n]))
		b = b[n:]
	}
	return append(s, mem.SliceBuffer(b))
}

// stale is what a reused frame may hold from the one before.
func stale() *pb.Frame {
	f := &pb.Frame{Data: make([]byte, 10, 1<<10), Control: pb.Control_DONE, Open: &pb.OpenFlow{}, Opened: &pb.Opened{Error: "x"}}
	f.ProtoReflect().SetUnknown(protowire.AppendTag(nil, 9, protowire.VarintType))
	return f
}

// The codec gRPC uses for "proto" decodes every frame as protobuf does,
// into a frame reused from the one before, whichever way the message is
// cut into buffers; data frames keep the frame's buffer.
func TestFrameCodec(t *testing.T) {
	codec := encoding.GetCodecV2("proto")
	if _, ok := codec.(frameCodec); !ok {
		t.Fatalf("gRPC's proto codec is %T, not frameCodec", codec)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB: a chunk
	twice := append(marshal(&pb.Frame{Data: []byte("old")}), marshal(&pb.Frame{Data: []byte("new"), Control: pb.Control_EOF})...)
	for _, c := range []struct {
		name    string
		wire    []byte
		reuses  bool // decoded into the reused frame's buffer
		invalid bool
	}{
		{name: "data", wire: marshal(&pb.Frame{Data: []byte("hello")}), reuses: true},
		{name: "128 KiB of data", wire: marshal(&pb.Frame{Data: big})},
		{name: "data and EOF", wire: marshal(&pb.Frame{Data: []byte("bye"), Control: pb.Control_EOF}), reuses: true},
		{name: "DONE alone", wire: marshal(&pb.Frame{Control: pb.Control_DONE}), reuses: true},
		{name: "empty", wire: nil, reuses: true},
		{name: "a control value this build does not know", wire: protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 77), reuses: true},
		{name: "a field twice: the last wins", wire: twice, reuses: true},
		{name: "open", wire: marshal(&pb.Frame{Open: &pb.OpenFlow{Port: 80}})},
		{name: "opened", wire: marshal(&pb.Frame{Opened: &pb.Opened{Status: pb.OpenStatus_OPEN_OK}})},
		{name: "unknown field", wire: protowire.AppendVarint(protowire.AppendTag(marshal(&pb.Frame{Data: []byte("a")}), 15, protowire.VarintType), 1)},
		{name: "field number past 32 bits, low bits 1", wire: protowire.AppendBytes(protowire.AppendVarint(nil, (1<<32|1)<<3|2), []byte("a")), invalid: true},
		{name: "data longer than the message", wire: []byte{1<<3 | 2, 5, 'a', 'b'}, invalid: true},
		{name: "truncated varint", wire: []byte{2 << 3, 0x80}, invalid: true},
		{name: "control as bytes: an unknown field", wire: []byte{2<<3 | 2, 1, 'a'}},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := new(pb.Frame)
			werr := proto.Unmarshal(c.wire, want)
			if (werr != nil) != c.invalid {
				t.Fatalf("proto.Unmarshal: %v; the case says invalid=%v", werr, c.invalid)
			}
			for _, piece := range []int{1, 2, 7, 1 << 20} {
				got := stale()
				buf := &got.Data[:1][0]
				err := codec.Unmarshal(split(c.wire, piece), got)
				if (err != nil) != c.invalid {
					t.Fatalf("pieces of %d: error %v, want invalid=%v", piece, err, c.invalid)
				}
				if err != nil {
					continue
				}
				if !proto.Equal(got, want) {
					t.Fatalf("pieces of %d: got %v, want %v", piece, got, want)
				}
				if reused := len(got.Data) > 0 && &got.Data[0] == buf; c.reuses && len(got.Data) > 0 && !reused {
					t.Errorf("pieces of %d: the payload is in a new buffer, not the frame's", piece)
				}
			}
		})
	}
}

// A data frame into a reused frame allocates nothing.
func TestFrameCodecAllocs(t *testing.T) {
	codec := encoding.GetCodecV2("proto")
	data := split(marshal(&pb.Frame{Data: bytes.Repeat([]byte{7}, chunkSize), Control: pb.Control_EOF}), 16<<10)
	f := new(pb.Frame)
	if n := testing.AllocsPerRun(100, func() {
		if err := codec.Unmarshal(data, f); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

// FuzzFrameCodec: whatever the bytes, the codec agrees with protobuf on
// whether they are a Frame and on its contents.
func FuzzFrameCodec(f *testing.F) {
	for _, fr := range []*pb.Frame{{Data: []byte("x")}, {Control: pb.Control_EOF}, {Open: &pb.OpenFlow{Port: 1}}} {
		f.Add(marshal(fr), uint8(3))
	}
	f.Add([]byte{1<<3 | 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, uint8(1))
	codec := encoding.GetCodecV2("proto")
	f.Fuzz(func(t *testing.T, wire []byte, piece uint8) {
		want := new(pb.Frame)
		werr := proto.Unmarshal(wire, want)
		got := stale()
		err := codec.Unmarshal(split(wire, int(piece)+1), got)
		if (err != nil) != (werr != nil) {
			t.Fatalf("codec error %v, protobuf's %v", err, werr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
}
