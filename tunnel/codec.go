package tunnel

import (
	"encoding/binary"
	"slices"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers "proto" before init below replaces it
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/tether-dev/tether/rpc/manager"
)

// frameCodec is gRPC's proto codec with a receive path of its own for data
// frames. The proto codec copies each message out of gRPC's buffers into
// one contiguous buffer, and protobuf then copies the payload again into a
// new slice: one 128 KiB allocation per frame, and the garbage collection
// it drives, took 27 % of the daemon's CPU on a bulk download (and of the
// manager's on an upload). Here a frame of only data and control fields is
// read straight from gRPC's buffers into the capacity the frame's Data
// already has, which the data loops reuse frame after frame: one copy, no
// allocation. Everything else, and every message that is not a Frame, goes
// to the proto codec.
type frameCodec struct {
	encoding.CodecV2 // gRPC's proto codec
}

// Replacing "proto" reaches both ends of every stream in the process: the
// codec is chosen per content subtype, and the flow's streams use the
// default one.
func init() {
	encoding.RegisterCodecV2(frameCodec{encoding.GetCodecV2("proto")})
}

// Unmarshal implements encoding.CodecV2.
func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*pb.Frame); ok && unmarshalDataFrame(data, f) {
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// Tags of pb.Frame's data and control fields (rpc/manager/manager.proto).
var (
	dataTag    = protowire.EncodeTag(1, protowire.BytesType)
	controlTag = protowire.EncodeTag(2, protowire.VarintType)
)

// unmarshalDataFrame decodes data into f as proto.Unmarshal would, and
// reports whether it could: only frames whose fields are all data and
// control, well formed. f.Data keeps its capacity, so the previous frame's
// payload is overwritten. On false, f may be half written; the caller
// unmarshals it in full, which resets it first.
func unmarshalDataFrame(data mem.BufferSlice, f *pb.Frame) bool {
	var r mem.Reader // takes references of its own: data stays whole
	r.Reset(data)
	defer r.Close()
	payload := f.Data[:0]
	var control pb.Control
	for r.Remaining() > 0 {
		tag, ok := readUvarint(&r)
		if !ok {
			return false
		}
		// Whole tags, not DecodeTag's field number, which truncates.
		switch tag {
		case dataTag:
			n, ok := readUvarint(&r)
			if !ok || n > uint64(r.Remaining()) {
				return false
			}
			// The last occurrence of a field wins, as in protobuf.
			payload = slices.Grow(payload[:0], int(n))[:n]
			if n, _ := r.Read(payload); n != len(payload) {
				return false
			}
		case controlTag:
			v, ok := readUvarint(&r)
			if !ok {
				return false
			}
			control = pb.Control(int32(v))
		default:
			return false
		}
	}
	f.Data, f.Control, f.Open, f.Opened = payload, control, nil, nil
	if len(f.ProtoReflect().GetUnknown()) > 0 {
		f.ProtoReflect().SetUnknown(nil)
	}
	return true
}

// readUvarint reads a varint as protowire.ConsumeVarint does (at most 10
// bytes, the last at most 1). binary.ReadUvarint would do, but through an
// io.ByteReader the Reader escapes: an allocation per frame.
func readUvarint(r *mem.Reader) (uint64, bool) {
	var v uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, false
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			return 0, false
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, true
		}
	}
	return 0, false
}
