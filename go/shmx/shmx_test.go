package shmx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var counter uint64

// uniqueName gives "shmxtest-go-<pid>-<n>" and fails the test if a region
// of that name is left behind.
func uniqueName(t *testing.T) string {
	name := fmt.Sprintf("shmxtest-go-%d-%d", os.Getpid(), atomic.AddUint64(&counter, 1))
	t.Cleanup(func() {
		dir := os.Getenv("SHMX_DIR")
		if dir == "" {
			dir = "/dev/shm"
		}
		if left, _ := filepath.Glob(filepath.Join(dir, name+"*")); len(left) > 0 {
			for _, f := range left {
				os.Remove(f)
			}
			t.Errorf("regions left behind: %v", left)
		}
	})
	return name
}

const (
	idSeq    = 1
	idPixels = 2
)

func demoConfig() ServerConfig {
	return ServerConfig{
		Slots:         4,
		FrameBytesCap: 8192,
		Streams: []StreamSpec{
			{ID: idSeq, Name: "seq", DType: DTU64, Components: 1, BytesPerElem: 8},
			{ID: idPixels, Name: "pixels", DType: DTU8, Components: 1, BytesPerElem: 1, Extra: []byte("w=64")},
		},
	}
}

func pattern(k uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((k + uint64(i)) % 251)
	}
	return b
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, v)
	return b
}

func TestVersion(t *testing.T) {
	if VersionNumber() != HeaderVersionNumber {
		t.Fatalf("library %d, header %d", VersionNumber(), HeaderVersionNumber)
	}
	parts := strings.Split(Version(), ".")
	if len(parts) != 3 {
		t.Fatalf("version %q", Version())
	}
	if EAGAIN.Name() != "SHMX_EAGAIN" || ESTREAM.Error() != "stream id not in the schema" {
		t.Fatalf("status strings: %q %q", EAGAIN.Name(), ESTREAM.Error())
	}
	if DTypeName(DTF32) != "float32" || DTypeSize(DTF64) != 8 {
		t.Fatal("dtype helpers")
	}
}

func TestPublishAndReadBack(t *testing.T) {
	name := uniqueName(t)
	srv, err := CreateServer(name, demoConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := Open(name, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	streams, err := cl.Streams()
	if err != nil || len(streams) != 2 || streams[1].Name != "pixels" || string(streams[1].Extra) != "w=64" ||
		streams[0].DType != DTU64 {
		t.Fatalf("schema %+v, %v", streams, err)
	}
	if _, err := cl.Latest(); !errors.Is(err, EAGAIN) {
		t.Fatalf("latest before any frame: %v", err)
	}
	if err := cl.Wait(time.Millisecond); !errors.Is(err, ETIMEDOUT) {
		t.Fatalf("wait: %v", err)
	}

	check := func(fv *FrameView, k uint64) {
		t.Helper()
		seq, pix := fv.Stream(idSeq), fv.Stream(idPixels)
		if fv.ID != k || seq == nil || pix == nil || binary.LittleEndian.Uint64(seq.Data) != k {
			t.Fatalf("frame %d: got id %d", k, fv.ID)
		}
		if !bytes.Equal(pix.Data, pattern(k, int(pix.ElemCount))) || fv.SimTime != float64(k)/1000 {
			t.Fatalf("frame %d: pixels or sim_time differ", k)
		}
	}
	// Frame 1 by copy.  (A client's first Next returns the latest frame.)
	if err := srv.PublishStreams(0.001, StreamData{idSeq, u64(1), 1}, StreamData{idPixels, pattern(1, 1000), 1000}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Wait(time.Second); err != nil {
		t.Fatal(err)
	}
	fv, err := cl.Latest()
	if err != nil {
		t.Fatal(err)
	}
	check(fv, 1)
	// Frames 2 and 3 zero-copy through a loan, read in order.
	for k := uint64(2); k <= 3; k++ {
		f, err := srv.BeginFrame()
		if err != nil {
			t.Fatal(err)
		}
		px, err := srv.Loan(f, idPixels, 5000)
		if err != nil || len(px) != 5000 {
			t.Fatalf("loan: %d bytes, %v", len(px), err)
		}
		copy(px, pattern(k, 5000))
		if err := srv.Append(f, idSeq, u64(k), 1); err != nil {
			t.Fatal(err)
		}
		if err := srv.Publish(f, float64(k)/1000); err != nil {
			t.Fatal(err)
		}
	}
	for k := uint64(2); k <= 3; k++ {
		fv, err := cl.Next()
		if err != nil {
			t.Fatal(err)
		}
		check(fv, k)
		if fv.Dropped != 0 {
			t.Fatalf("frame %d: %d dropped", k, fv.Dropped)
		}
	}
	if _, err := cl.Next(); !errors.Is(err, EAGAIN) {
		t.Fatalf("next past the end: %v", err)
	}
	fv, err = cl.Latest()
	if err != nil || fv.ID != 3 {
		t.Fatalf("latest: %v %v", fv.ID, err)
	}
	h, err := srv.Header()
	if err != nil || h.FrameSeq != 3 || h.ReadersConnected != 1 || !h.Extended || h.OwnerPID != uint64(os.Getpid()) {
		t.Fatalf("header %+v %v", h, err)
	}
}

func TestManyFramesWithAWaitingReader(t *testing.T) {
	name := uniqueName(t)
	srv, err := CreateServer(name, demoConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := Open(name, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const frames = 500
	done := make(chan error, 1)
	go func() { // the reader: every frame it gets is checked byte by byte
		var last, got, dropped uint64
		for last < frames {
			if err := cl.Wait(2 * time.Second); err != nil {
				done <- err
				return
			}
			for {
				fv, err := cl.Next()
				if errors.Is(err, EAGAIN) {
					break
				} else if err != nil {
					done <- err
					return
				}
				k := binary.LittleEndian.Uint64(fv.Stream(idSeq).Data)
				pix := fv.Stream(idPixels).Data
				if k != fv.ID || (last != 0 && k != last+1+fv.Dropped) || fv.DroppedTotal != dropped+fv.Dropped ||
					!bytes.Equal(pix, pattern(k, len(pix))) {
					done <- fmt.Errorf("frame %d after %d: bad", k, last)
					return
				}
				last, got, dropped = k, got+1, dropped+fv.Dropped
			}
		}
		if got == 0 {
			done <- errors.New("no frame read")
			return
		}
		done <- nil
	}()
	for k := uint64(1); k <= frames; {
		n := int(k*37%8000) + 1
		err := srv.PublishStreams(float64(k)/1000, StreamData{idSeq, u64(k), 1}, StreamData{idPixels, pattern(k, n), uint32(n)})
		if errors.Is(err, EBUSY) {
			time.Sleep(100 * time.Microsecond)
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		k++
		if k%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("reader did not finish")
	}
}

func TestRefusals(t *testing.T) {
	name := uniqueName(t)
	srv, err := CreateServer(name, demoConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := CreateServer(name, demoConfig()); !errors.Is(err, EEXIST) ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := CreateServer("bad/name", demoConfig()); !errors.Is(err, ENAME) {
		t.Fatalf("bad name: %v", err)
	}
	dup := demoConfig()
	dup.Streams[1].ID = idSeq
	if _, err := CreateServer(uniqueName(t), dup); !errors.Is(err, EDUP) {
		t.Fatalf("duplicate id: %v", err)
	}
	f, _ := srv.BeginFrame()
	if err := srv.Append(f, 99, []byte{1}, 1); !errors.Is(err, ESTREAM) {
		t.Fatalf("unknown stream: %v", err)
	}
	var e *Error
	if err := srv.Append(f, idSeq, []byte{1, 2, 3}, 1); !errors.Is(err, ESIZE) || !errors.As(err, &e) || e.Op != "append" ||
		!strings.Contains(e.Detail, "seq") {
		t.Fatalf("wrong size: %v", err)
	}
	if err := srv.Append(f, idPixels, make([]byte, 9000), 9000); !errors.Is(err, ETOOBIG) {
		t.Fatalf("too big: %v", err)
	}
	if err := srv.Publish(f, 0); err != nil {
		t.Fatal(err)
	}
	if err := srv.Publish(f, 0); !errors.Is(err, EHANDLE) {
		t.Fatalf("stale handle: %v", err)
	}
	if _, err := Open(uniqueName(t), ""); !errors.Is(err, ENOENT) {
		t.Fatalf("missing region: %v", err)
	}
}

func TestControl(t *testing.T) {
	name := uniqueName(t)
	cfg := demoConfig()
	cfg.ControlPerReader = 256
	srv, err := CreateServer(name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cl, err := Open(name, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if m, err := srv.NextControl(); m != nil || err != nil {
		t.Fatalf("empty ring: %v %v", m, err)
	}
	if ok, err := srv.WaitControl(time.Millisecond); ok || err != nil {
		t.Fatalf("wait on empty ring: %v %v", ok, err)
	}
	// The sender may still be inside send_control (waking the server) when
	// the message is read: wait for it before the client can be closed.
	sentHello := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		sentHello <- cl.SendControl(TLVControlUser, []byte("hello"))
	}()
	if ok, err := srv.WaitControl(5 * time.Second); !ok || err != nil {
		t.Fatalf("wait: %v %v", ok, err)
	}
	if err := <-sentHello; err != nil {
		t.Fatalf("send: %v", err)
	}
	m, err := srv.NextControl()
	if err != nil || m == nil || m.Type != TLVControlUser || string(m.Data) != "hello" || m.ReaderID != cl.ReaderID() {
		t.Fatalf("message %+v %v", m, err)
	}
	// Fill the ring until EFULL, then drain: everything arrives in order.
	sent := 0
	for ; ; sent++ {
		err := cl.SendControl(0x3001, []byte(fmt.Sprintf("msg %d", sent)))
		if errors.Is(err, EFULL) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < sent; i++ {
		m, err := srv.NextControl()
		if err != nil || m == nil || string(m.Data) != fmt.Sprintf("msg %d", i) {
			t.Fatalf("message %d: %+v %v", i, m, err)
		}
	}
	if sent < 5 {
		t.Fatalf("only %d messages fit", sent)
	}
	// A message larger than the receive buffer is grown into.
	srv.ctlBuf = make([]byte, 4)
	if err := cl.SendControl(0x3002, bytes.Repeat([]byte{7}, 100)); err != nil {
		t.Fatal(err)
	}
	if m, err := srv.NextControl(); err != nil || m == nil || len(m.Data) != 100 {
		t.Fatalf("large message: %+v %v", m, err)
	}
}

func TestServerGone(t *testing.T) {
	name := uniqueName(t)
	srv, err := CreateServer(name, demoConfig())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Open(name, "")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.ServerAlive() != Alive {
		t.Fatal("server should be alive")
	}
	srv.Close()
	srv.Close() // twice is fine
	if err := cl.Wait(time.Second); !errors.Is(err, ECLOSED) {
		t.Fatalf("wait after close: %v", err)
	}
	if cl.ServerAlive() != Dead {
		t.Fatal("server should be dead")
	}
}

func TestWaitPollerOnTheWakeFd(t *testing.T) {
	name := uniqueName(t)
	srv, err := CreateServer(name, demoConfig())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Open(name, "")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	defer cl.Close()
	fd, err := cl.WaitFd()
	if err != nil || fd < 0 {
		t.Fatalf("wait fd: %d %v", fd, err)
	}
	if ready, err := cl.ArmFd(); ready || err != nil {
		t.Fatalf("arm with no frame: %v %v", ready, err)
	}
	if err := cl.WaitPoller(20 * time.Millisecond); !errors.Is(err, ETIMEDOUT) {
		t.Fatalf("wait with no frame: %v", err)
	}
	for k := uint64(1); k <= 20; k++ {
		done := make(chan error, 1)
		go func(k uint64) {
			time.Sleep(2 * time.Millisecond)
			done <- srv.PublishStreams(0, StreamData{ID: idSeq, Data: u64(k), ElemCount: 1})
		}(k)
		if err := cl.WaitPoller(10 * time.Second); err != nil {
			t.Fatalf("frame %d: %v", k, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		fv, err := cl.Next()
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint64(fv.Stream(idSeq).Data); got != k {
			t.Fatalf("read %d, want %d", got, k)
		}
	}
	srv.Close()
	if err := cl.WaitPoller(10 * time.Second); !errors.Is(err, ECLOSED) {
		t.Fatalf("wait after the server closed: %v", err)
	}
}
