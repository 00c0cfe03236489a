// Package shmx is a Go binding of libshmx: one producer process streams
// frames (sets of typed, named streams) to many consumer processes through
// shared memory, zero copy on the read side.
//
// It wraps the C API of shmx.h through cgo and finds the library with
// pkg-config (install it with `make -C csrc install PREFIX=...` and point
// PKG_CONFIG_PATH at PREFIX/lib/pkgconfig).
//
// A Server, Client or Inspector-like handle is used by one goroutine at a
// time; different handles may be used concurrently.  Byte slices returned
// by Client.Latest/Next and Server.Loan point into shared memory: a frame's
// slices stay valid and unchanged until the client's next read call or
// Close; a loaned slice may be written until Publish.
package shmx

/*
#cgo pkg-config: shmx
#include <stdlib.h>
#include <string.h>
#include <shmx.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// Version is the libshmx version the program runs with ("1.2.0").
func Version() string { return C.GoString(C.shmx_version()) }

// VersionNumber is major*10000 + minor*100 + patch of the running library.
func VersionNumber() uint { return uint(C.shmx_version_number()) }

// HeaderVersionNumber is the version of the shmx.h this package was built
// with; it equals VersionNumber() unless the library was swapped.
const HeaderVersionNumber = C.SHMX_VERSION_NUMBER

// Status is a libshmx status code; every value but OK is also an error,
// so errors.Is(err, shmx.EAGAIN) tells what went wrong.
type Status int

// The statuses of shmx.h (values fixed forever).
const (
	OK        Status = C.SHMX_OK
	EINVAL    Status = C.SHMX_EINVAL
	ENAME     Status = C.SHMX_ENAME
	ENOENT    Status = C.SHMX_ENOENT
	EEXIST    Status = C.SHMX_EEXIST
	EACCES    Status = C.SHMX_EACCES
	ENOSPC    Status = C.SHMX_ENOSPC
	ECORRUPT  Status = C.SHMX_ECORRUPT
	EVERSION  Status = C.SHMX_EVERSION
	ETOOBIG   Status = C.SHMX_ETOOBIG
	ESTREAM   Status = C.SHMX_ESTREAM
	ESIZE     Status = C.SHMX_ESIZE
	EFULL     Status = C.SHMX_EFULL
	EHANDLE   Status = C.SHMX_EHANDLE
	EAGAIN    Status = C.SHMX_EAGAIN
	ETIMEDOUT Status = C.SHMX_ETIMEDOUT
	ECLOSED   Status = C.SHMX_ECLOSED
	ENOREADER Status = C.SHMX_ENOREADER
	EBUSY     Status = C.SHMX_EBUSY
	ELEGACY   Status = C.SHMX_ELEGACY
	ESYS      Status = C.SHMX_ESYS
	ENOMEM    Status = C.SHMX_ENOMEM
	EDUP      Status = C.SHMX_EDUP
)

// Error is the short message of the status ("stream id not in the schema").
func (s Status) Error() string { return C.GoString(C.shmx_strerror(C.int(s))) }

// Name is the C name of the status ("SHMX_ESTREAM").
func (s Status) Name() string { return C.GoString(C.shmx_status_name(C.int(s))) }

// Error is a failed call: which operation, its status and the library's
// detail (which region, stream, errno...).
type Error struct {
	Op     string
	Status Status
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("shmx: %s: %s", e.Op, e.Status.Error())
	}
	return fmt.Sprintf("shmx: %s: %s (%s)", e.Op, e.Status.Error(), e.Detail)
}

// Unwrap makes errors.Is(err, shmx.EAGAIN) work.
func (e *Error) Unwrap() error { return e.Status }

// check turns a status into an error.  The detail comes from the C
// library's thread-local last error, so callers run the C call and check on
// one locked OS thread (see locked).
func check(op string, st C.shmx_status) error {
	if st == C.SHMX_OK {
		return nil
	}
	return &Error{Op: op, Status: Status(st), Detail: C.GoString(C.shmx_last_error())}
}

// locked runs f on one OS thread so that shmx_last_error() belongs to the
// call f made (a goroutine may otherwise move between threads).
func locked(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return f()
}

// Element types, layouts, TLV types and liveness values of shmx.h.
const (
	DTBool = C.SHMX_DT_BOOL
	DTI8   = C.SHMX_DT_I8
	DTU8   = C.SHMX_DT_U8
	DTI16  = C.SHMX_DT_I16
	DTU16  = C.SHMX_DT_U16
	DTI32  = C.SHMX_DT_I32
	DTU32  = C.SHMX_DT_U32
	DTI64  = C.SHMX_DT_I64
	DTU64  = C.SHMX_DT_U64
	DTF16  = C.SHMX_DT_F16
	DTBF16 = C.SHMX_DT_BF16
	DTF32  = C.SHMX_DT_F32
	DTF64  = C.SHMX_DT_F64

	LayoutScalar = C.SHMX_LAYOUT_SOA_SCALAR
	LayoutVector = C.SHMX_LAYOUT_AOS_VECTOR

	TLVControlUser = C.SHMX_TLV_CONTROL_USER

	Dead    = C.SHMX_DEAD
	Alive   = C.SHMX_ALIVE
	Unknown = C.SHMX_UNKNOWN
)

// DTypeName is "float32", "uint8", ... ("unknown" for an unknown code).
func DTypeName(dtype uint32) string { return C.GoString(C.shmx_dtype_name(C.uint32_t(dtype))) }

// DTypeSize is the size in bytes of one component of a dtype (0: unknown).
func DTypeSize(dtype uint32) uint32 { return uint32(C.shmx_dtype_size(C.uint32_t(dtype))) }

// StreamSpec describes one stream of the schema.  BytesPerElem is the size
// of one whole element (all components).
type StreamSpec struct {
	ID           uint32
	Name         string
	DType        uint32
	Components   uint32
	Layout       uint32
	BytesPerElem uint32
	Extra        []byte
}

// ServerConfig holds the region's geometry.  Zero fields take the
// library's defaults (3 slots, 16 reader slots, 64 KiB per frame, 4 KiB
// control ring per reader, mode 0600).
type ServerConfig struct {
	Slots            uint32
	ReaderSlots      uint32
	StaticBytesCap   uint32
	FrameBytesCap    uint32 // largest stream of a frame, in bytes
	ControlPerReader uint32
	NoControl        bool // no control rings at all
	Mode             uint32
	Streams          []StreamSpec
	Dir              string // "" = $SHMX_DIR or /dev/shm
}

// HeaderInfo is the region header as a handle sees it.
type HeaderInfo struct {
	SessionID        uint64
	FrameSeq         uint64
	TotalBytes       uint64
	Slots            uint32
	FrameBytesCap    uint32
	ReaderSlots      uint32
	ReadersConnected uint32
	ControlPerReader uint32
	Extended         bool
	Closed           bool
	OwnerPID         uint64
	OwnerAlive       uint32 // Alive, Dead or Unknown
	Overruns         uint64
}

func headerFrom(h *C.shmx_header_info) HeaderInfo {
	return HeaderInfo{
		SessionID: uint64(h.session_id), FrameSeq: uint64(h.frame_seq), TotalBytes: uint64(h.total_bytes),
		Slots: uint32(h.slots), FrameBytesCap: uint32(h.frame_bytes_cap), ReaderSlots: uint32(h.reader_slots),
		ReadersConnected: uint32(h.readers_connected), ControlPerReader: uint32(h.control_per_reader),
		Extended: h.extended != 0, Closed: h.closed != 0, OwnerPID: uint64(h.owner_pid),
		OwnerAlive: uint32(h.owner_alive), Overruns: uint64(h.overruns),
	}
}

// StreamInfo is one stream of a region's schema.
type StreamInfo struct {
	ID, DType, Components, Layout, BytesPerElem uint32
	Name                                        string
	Extra                                       []byte
}

func streamsOf(count C.uint32_t, get func(i C.uint32_t, out *C.shmx_stream_info) C.shmx_status) ([]StreamInfo, error) {
	out := make([]StreamInfo, 0, int(count))
	var si C.shmx_stream_info
	for i := C.uint32_t(0); i < count; i++ {
		si.struct_size = C.uint32_t(unsafe.Sizeof(si))
		if err := check("stream_info", get(i, &si)); err != nil {
			return nil, err
		}
		info := StreamInfo{ID: uint32(si.stream_id), DType: uint32(si.dtype), Components: uint32(si.components),
			Layout: uint32(si.layout), BytesPerElem: uint32(si.bytes_per_elem),
			Name: C.GoStringN(si.name, C.int(si.name_len))}
		if si.extra_len > 0 {
			info.Extra = C.GoBytes(si.extra, C.int(si.extra_len))
		}
		out = append(out, info)
	}
	return out, nil
}

func durationNs(d time.Duration) C.int64_t {
	if d < 0 {
		return -1
	}
	return C.int64_t(d.Nanoseconds())
}

// ------------------------------------------------------------------ server

// Server is the producer of one region.
type Server struct {
	s      *C.shmx_server
	ctlBuf []byte
}

// Frame is the handle of a frame being built (BeginFrame .. Publish).
type Frame uint64

// CreateServer creates region `name` and becomes its producer.  A region
// of that name whose owner is dead is reclaimed; a live owner makes this
// fail with EEXIST (the detail names its pid).
func CreateServer(name string, cfg ServerConfig) (*Server, error) {
	var c C.shmx_server_config
	C.shmx_server_config_init(&c)
	if cfg.Slots != 0 {
		c.slots = C.uint32_t(cfg.Slots)
	}
	if cfg.ReaderSlots != 0 {
		c.reader_slots = C.uint32_t(cfg.ReaderSlots)
	}
	if cfg.StaticBytesCap != 0 {
		c.static_bytes_cap = C.uint32_t(cfg.StaticBytesCap)
	}
	if cfg.FrameBytesCap != 0 {
		c.frame_bytes_cap = C.uint32_t(cfg.FrameBytesCap)
	}
	if cfg.ControlPerReader != 0 {
		c.control_per_reader = C.uint32_t(cfg.ControlPerReader)
	}
	if cfg.NoControl {
		c.control_per_reader = 0
	}
	if cfg.Mode != 0 {
		c.mode = C.uint32_t(cfg.Mode)
	}
	// Everything the config points to lives in C memory: cgo forbids
	// passing Go memory that holds Go pointers.
	var toFree []unsafe.Pointer
	defer func() {
		for _, p := range toFree {
			C.free(p)
		}
	}()
	if n := len(cfg.Streams); n > 0 {
		specs := unsafe.Slice((*C.shmx_stream_spec)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.shmx_stream_spec{})))), n)
		toFree = append(toFree, unsafe.Pointer(&specs[0]))
		for i, sp := range cfg.Streams {
			name := C.CString(sp.Name)
			toFree = append(toFree, unsafe.Pointer(name))
			specs[i] = C.shmx_stream_spec{stream_id: C.uint32_t(sp.ID), dtype: C.uint32_t(sp.DType),
				components: C.uint32_t(sp.Components), layout: C.uint32_t(sp.Layout),
				bytes_per_elem: C.uint32_t(sp.BytesPerElem), name: name}
			if len(sp.Extra) > 0 {
				extra := C.CBytes(sp.Extra)
				toFree = append(toFree, extra)
				specs[i].extra = extra
				specs[i].extra_len = C.uint32_t(len(sp.Extra))
			}
		}
		c.streams = &specs[0]
		c.stream_count = C.uint32_t(n)
	}
	if cfg.Dir != "" {
		dir := C.CString(cfg.Dir)
		toFree = append(toFree, unsafe.Pointer(dir))
		c.dir = dir
	}
	cname := C.CString(name)
	toFree = append(toFree, unsafe.Pointer(cname))
	srv := &Server{}
	err := locked(func() error { return check("create", C.shmx_server_create(cname, &c, &srv.s)) })
	if err != nil {
		return nil, err
	}
	runtime.SetFinalizer(srv, (*Server).Close)
	return srv, nil
}

// Close marks the region closed, removes its name and unmaps it.  Readers
// keep a valid mapping and learn the server is gone.  Safe to call twice.
func (s *Server) Close() {
	if s.s != nil {
		C.shmx_server_destroy(s.s)
		s.s = nil
		runtime.SetFinalizer(s, nil)
	}
}

// BeginFrame starts a frame.  EBUSY when every slot is pinned by readers
// (nothing already published is touched): try again a moment later.
func (s *Server) BeginFrame() (Frame, error) {
	var f C.uint64_t
	err := locked(func() error { return check("begin_frame", C.shmx_server_begin_frame(s.s, &f)) })
	return Frame(f), err
}

// Append copies a stream's data (elemCount elements of the stream's
// BytesPerElem) into the frame.
func (s *Server) Append(f Frame, streamID uint32, data []byte, elemCount uint32) error {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return locked(func() error {
		return check("append", C.shmx_server_append(s.s, C.uint64_t(f), C.uint32_t(streamID), p,
			C.uint64_t(len(data)), C.uint32_t(elemCount)))
	})
}

// Loan reserves a stream of elemCount elements in the frame and returns
// its bytes in shared memory, to be filled before Publish (zero copy).
func (s *Server) Loan(f Frame, streamID uint32, elemCount uint32) ([]byte, error) {
	var p unsafe.Pointer
	err := locked(func() error {
		return check("loan", C.shmx_server_loan(s.s, C.uint64_t(f), C.uint32_t(streamID), C.uint32_t(elemCount), &p))
	})
	if err != nil {
		return nil, err
	}
	var bpe uint32
	for _, st := range s.streams() {
		if st.ID == streamID {
			bpe = st.BytesPerElem
		}
	}
	return unsafe.Slice((*byte)(p), int(bpe)*int(elemCount)), nil
}

// Publish makes the frame visible to readers and wakes waiting ones.  It
// never blocks.
func (s *Server) Publish(f Frame, simTime float64) error {
	return locked(func() error {
		return check("publish", C.shmx_server_publish(s.s, C.uint64_t(f), C.double(simTime)))
	})
}

// StreamData is one stream of a frame for PublishStreams.
type StreamData struct {
	ID        uint32
	Data      []byte
	ElemCount uint32
}

// PublishStreams builds and publishes one frame in one call.
func (s *Server) PublishStreams(simTime float64, streams ...StreamData) error {
	f, err := s.BeginFrame()
	if err != nil {
		return err
	}
	for _, st := range streams {
		if err := s.Append(f, st.ID, st.Data, st.ElemCount); err != nil {
			return err
		}
	}
	return s.Publish(f, simTime)
}

func (s *Server) streams() []StreamInfo {
	out, _ := streamsOf(C.shmx_server_stream_count(s.s), func(i C.uint32_t, si *C.shmx_stream_info) C.shmx_status {
		return C.shmx_server_stream_info(s.s, i, si)
	})
	return out
}

// Streams is the region's schema.
func (s *Server) Streams() []StreamInfo { return s.streams() }

// Header is the region header.
func (s *Server) Header() (HeaderInfo, error) {
	var h C.shmx_header_info
	h.struct_size = C.uint32_t(unsafe.Sizeof(h))
	err := locked(func() error { return check("header_info", C.shmx_server_header_info(s.s, &h)) })
	return headerFrom(&h), err
}

// ControlMessage is one message a client sent to the server.
type ControlMessage struct {
	Type        uint32
	ReaderIndex uint32
	ReaderID    uint64
	Data        []byte
}

// NextControl takes the next control message from any client (round
// robin), or returns nil, nil when there is none.
func (s *Server) NextControl() (*ControlMessage, error) {
	if s.ctlBuf == nil {
		s.ctlBuf = make([]byte, 4096)
	}
	for {
		var m C.shmx_control_msg
		m.struct_size = C.uint32_t(unsafe.Sizeof(m))
		var st C.shmx_status
		err := locked(func() error {
			st = C.shmx_server_next_control(s.s, &m, unsafe.Pointer(&s.ctlBuf[0]), C.uint32_t(len(s.ctlBuf)))
			if st == C.SHMX_EAGAIN || st == C.SHMX_ETOOBIG {
				return nil
			}
			return check("next_control", st)
		})
		switch {
		case err != nil:
			return nil, err
		case st == C.SHMX_EAGAIN:
			return nil, nil
		case st == C.SHMX_ETOOBIG: // kept by the library: grow and take it again
			s.ctlBuf = make([]byte, int(m.length))
			continue
		}
		data := make([]byte, int(m.length))
		copy(data, s.ctlBuf[:int(m.length)])
		return &ControlMessage{Type: uint32(m._type), ReaderIndex: uint32(m.reader_index),
			ReaderID: uint64(m.reader_id), Data: data}, nil
	}
}

// WaitControl sleeps until a control message may be there (true) or the
// timeout passes (false; negative: no timeout).
func (s *Server) WaitControl(timeout time.Duration) (bool, error) {
	var st C.shmx_status
	err := locked(func() error {
		st = C.shmx_server_wait_control(s.s, durationNs(timeout))
		if st == C.SHMX_ETIMEDOUT {
			return nil
		}
		return check("wait_control", st)
	})
	return err == nil && st == C.SHMX_OK, err
}

// ------------------------------------------------------------------ client

// Client reads frames from a region.
type Client struct {
	c    *C.shmx_client
	wake *os.File // a dup of the wake fd, in Go's network poller (WaitPoller)
}

// StreamView is one stream of a frame; Data points into shared memory.
type StreamView struct {
	ID        uint32
	ElemCount uint32
	Data      []byte
}

// FrameView is a frame as a client read it.  Its slices stay valid and
// unchanged until the client's next read call or Close.
type FrameView struct {
	ID           uint64
	SimTime      float64
	Dropped      uint64 // Next: frames overwritten before they could be read
	DroppedTotal uint64 // the sum of Dropped since the client was opened (or reconnected)
	Published    uint64 // frame_seq as the read loaded it: frames newer than this one (a lower bound; ID may exceed it)
	PayloadBytes uint32
	Streams      []StreamView
}

// Stream is the view of stream id in the frame, or nil.
func (f *FrameView) Stream(id uint32) *StreamView {
	for i := range f.Streams {
		if f.Streams[i].ID == id {
			return &f.Streams[i]
		}
	}
	return nil
}

// Open attaches to region `name` as a reader (dir "" = $SHMX_DIR or
// /dev/shm).  ENOENT while the region does not exist yet.
func Open(name string, dir string) (*Client, error) {
	var opt C.shmx_open_options
	C.shmx_open_options_init(&opt)
	if dir != "" {
		cdir := C.CString(dir)
		defer C.free(unsafe.Pointer(cdir))
		opt.dir = cdir
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	cl := &Client{}
	err := locked(func() error { return check("open", C.shmx_client_open(cname, &opt, &cl.c)) })
	if err != nil {
		return nil, err
	}
	runtime.SetFinalizer(cl, (*Client).Close)
	return cl, nil
}

// Close leaves the reader slot and unmaps the region.  Slices of frames
// read before must not be used afterwards.
func (c *Client) Close() {
	if c.wake != nil {
		c.wake.Close()
		c.wake = nil
	}
	if c.c != nil {
		C.shmx_client_close(c.c)
		c.c = nil
		runtime.SetFinalizer(c, nil)
	}
}

func (c *Client) read(op string, f func(*C.shmx_frame_info) C.shmx_status) (*FrameView, error) {
	var fi C.shmx_frame_info
	fi.struct_size = C.uint32_t(unsafe.Sizeof(fi))
	var fv *FrameView
	err := locked(func() error {
		if err := check(op, f(&fi)); err != nil {
			return err
		}
		fv = &FrameView{ID: uint64(fi.frame_id), SimTime: float64(fi.sim_time), Dropped: uint64(fi.dropped),
			DroppedTotal: uint64(fi.dropped_total), Published: uint64(fi.published),
			PayloadBytes: uint32(fi.payload_bytes), Streams: make([]StreamView, 0, int(fi.stream_count))}
		var v C.shmx_stream_view
		for i := C.uint32_t(0); i < fi.stream_count; i++ {
			v.struct_size = C.uint32_t(unsafe.Sizeof(v))
			if err := check("frame_stream", C.shmx_client_frame_stream(c.c, i, &v)); err != nil {
				return err
			}
			fv.Streams = append(fv.Streams, StreamView{ID: uint32(v.stream_id), ElemCount: uint32(v.elem_count),
				Data: unsafe.Slice((*byte)(v.data), int(v.bytes))})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return fv, nil
}

// Latest is the newest complete frame (EAGAIN: none yet).  Never torn and
// never older than a frame this client returned before.
func (c *Client) Latest() (*FrameView, error) {
	return c.read("latest", func(fi *C.shmx_frame_info) C.shmx_status { return C.shmx_client_latest(c.c, fi) })
}

// Next is the next frame in publication order after the last one read
// (EAGAIN: not published yet); Dropped counts frames lost in between.
func (c *Client) Next() (*FrameView, error) {
	return c.read("next", func(fi *C.shmx_frame_info) C.shmx_status { return C.shmx_client_next(c.c, fi) })
}

// Wait sleeps until a frame newer than the last one read is published
// (nil), the timeout passes (ETIMEDOUT; negative: none) or the server is
// gone (ECLOSED).
func (c *Client) Wait(timeout time.Duration) error {
	return locked(func() error { return check("wait", C.shmx_client_wait(c.c, durationNs(timeout))) })
}

// Release drops the pin on the last frame early (its slices may change).
func (c *Client) Release() { C.shmx_client_release(c.c) }

// SendControl sends a message to the server.  EFULL when the ring is full:
// try again once the server has caught up.
func (c *Client) SendControl(typ uint32, data []byte) error {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	return locked(func() error {
		return check("send_control", C.shmx_client_send_control(c.c, C.uint32_t(typ), p, C.uint32_t(len(data))))
	})
}

// Streams is the region's schema.
func (c *Client) Streams() ([]StreamInfo, error) {
	var out []StreamInfo
	err := locked(func() error {
		var err error
		out, err = streamsOf(C.shmx_client_stream_count(c.c), func(i C.uint32_t, si *C.shmx_stream_info) C.shmx_status {
			return C.shmx_client_stream_info(c.c, i, si)
		})
		return err
	})
	return out, err
}

// Header is the region header.
func (c *Client) Header() (HeaderInfo, error) {
	var h C.shmx_header_info
	h.struct_size = C.uint32_t(unsafe.Sizeof(h))
	err := locked(func() error { return check("header_info", C.shmx_client_header_info(c.c, &h)) })
	return headerFrom(&h), err
}

// ReaderID is this client's id, as the server sees it in control messages.
func (c *Client) ReaderID() uint64 { return uint64(C.shmx_client_reader_id(c.c)) }

// ServerAlive is Alive, Dead, or Unknown (a shmx 1.0.1 producer).
func (c *Client) ServerAlive() uint32 { return uint32(C.shmx_client_server_alive(c.c)) }

// WaitFd is the client's wake file descriptor (shmx_client_wait_fd): once
// armed (ArmFd), it becomes readable when a frame newer than the last one
// read is published, or when the server goes away.  It belongs to the
// client: do not close it.  ESYS where there is no wake channel.
func (c *Client) WaitFd() (int, error) {
	var fd C.int
	err := locked(func() error { return check("wait_fd", C.shmx_client_wait_fd(c.c, &fd)) })
	return int(fd), err
}

// ArmFd drains and arms the wake fd.  true: a frame newer than the last one
// read is there now (read it); false: armed, wait until the fd is readable.
// ECLOSED when the server is gone.
func (c *Client) ArmFd() (bool, error) {
	ready := false
	err := locked(func() error {
		st := C.shmx_client_arm_fd(c.c)
		if st == C.SHMX_EAGAIN {
			return nil
		}
		if err := check("arm_fd", st); err != nil {
			return err
		}
		ready = true
		return nil
	})
	return ready, err
}

// WaitPoller is Wait through Go's network poller on the wake fd: the
// goroutine parks and holds no OS thread while it waits (Wait blocks one in
// a futex).  nil when a newer frame is there, ETIMEDOUT after timeout
// (negative: none), ECLOSED when the server is gone.
func (c *Client) WaitPoller(timeout time.Duration) error {
	if c.wake == nil {
		fd, err := c.WaitFd()
		if err != nil {
			return err
		}
		dup, err := syscall.Dup(fd)
		if err != nil {
			return &Error{Op: "wait_poller", Status: ESYS, Detail: err.Error()}
		}
		syscall.CloseOnExec(dup)
		if err := syscall.SetNonblock(dup, true); err != nil {
			syscall.Close(dup)
			return &Error{Op: "wait_poller", Status: ESYS, Detail: err.Error()}
		}
		c.wake = os.NewFile(uintptr(dup), "shmx-wake")
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	rc, err := c.wake.SyscallConn()
	if err != nil {
		return &Error{Op: "wait_poller", Status: ESYS, Detail: err.Error()}
	}
	for {
		ready, err := c.ArmFd()
		if err != nil || ready {
			return err
		}
		if err := c.wake.SetReadDeadline(deadline); err != nil {
			return &Error{Op: "wait_poller", Status: ESYS, Detail: err.Error()}
		}
		first := true
		err = rc.Read(func(uintptr) bool {
			if first { // park until readable
				first = false
				return false
			}
			return true
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return &Error{Op: "wait_poller", Status: ETIMEDOUT, Detail: "no new frame before the timeout"}
		}
		if err != nil {
			return &Error{Op: "wait_poller", Status: ESYS, Detail: err.Error()}
		}
	}
}
