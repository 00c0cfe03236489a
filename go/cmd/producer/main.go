// Command producer publishes demo-schema frames (see examples/c/README.md)
// with the Go binding:
//
//	producer -name demo -frames 500 -rate 100 -wait-readers 1
//
// Frame k carries seq = k, pixels[i] = (k + i) % 251 (written in place
// through a loan) and stamp = k/1000.  Control messages from consumers are
// printed.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"shmx.local/shmx"
)

func main() {
	name := flag.String("name", "shmx-c-demo", "region name")
	frames := flag.Uint64("frames", 100, "frames to publish")
	nbytes := flag.Uint("bytes", 4096, "pixel bytes per frame")
	rate := flag.Float64("rate", 100, "frames per second (0: as fast as possible)")
	waitReaders := flag.Uint("wait-readers", 0, "wait for this many readers before publishing")
	linger := flag.Duration("linger", 5*time.Second, "after the last frame, wait this long for readers to leave")
	flag.Parse()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)

	srv, err := shmx.CreateServer(*name, shmx.ServerConfig{
		Slots:         4,
		FrameBytesCap: uint32(*nbytes) + 16,
		Streams: []shmx.StreamSpec{
			{ID: 1, Name: "seq", DType: shmx.DTU64, Components: 1, BytesPerElem: 8},
			{ID: 2, Name: "pixels", DType: shmx.DTU8, Components: 1, BytesPerElem: 1},
			{ID: 3, Name: "stamp", DType: shmx.DTF64, Components: 1, BytesPerElem: 8},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "producer:", err)
		os.Exit(1)
	}
	defer srv.Close()
	fmt.Printf("producer (Go): region %q, %d frames of %d pixel bytes\n", *name, *frames, *nbytes)

	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	drain := func() {
		for {
			m, err := srv.NextControl()
			if err != nil || m == nil {
				return
			}
			fmt.Printf("producer: control from reader %016x: type 0x%x %q\n", m.ReaderID, m.Type, m.Data)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); *waitReaders > 0; time.Sleep(time.Millisecond) {
		h, _ := srv.Header()
		if h.ReadersConnected >= uint32(*waitReaders) {
			break
		}
		if time.Now().After(deadline) || stopped() {
			fmt.Fprintln(os.Stderr, "producer: readers did not come")
			srv.Close()
			os.Exit(1)
		}
	}

	var period time.Duration
	if *rate > 0 {
		period = time.Duration(float64(time.Second) / *rate)
	}
	next := time.Now()
	seq, stamp := make([]byte, 8), make([]byte, 8)
	var published uint64
	for k := uint64(1); k <= *frames; {
		if stopped() {
			break
		}
		f, err := srv.BeginFrame()
		if errors.Is(err, shmx.EBUSY) { // every slot pinned by a reader
			time.Sleep(100 * time.Microsecond)
			continue
		}
		if err == nil {
			var px []byte
			if px, err = srv.Loan(f, 2, uint32(*nbytes)); err == nil {
				for i := range px {
					px[i] = byte((k + uint64(i)) % 251)
				}
				binary.LittleEndian.PutUint64(seq, k)
				binary.LittleEndian.PutUint64(stamp, math.Float64bits(float64(k)/1000))
				if err = srv.Append(f, 1, seq, 1); err == nil {
					if err = srv.Append(f, 3, stamp, 1); err == nil {
						err = srv.Publish(f, float64(k)/1000)
					}
				}
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "producer:", err)
			srv.Close()
			os.Exit(1)
		}
		published, k = k, k+1
		drain()
		if period > 0 {
			next = next.Add(period)
			time.Sleep(time.Until(next))
		}
	}
	for deadline := time.Now().Add(*linger); time.Now().Before(deadline) && !stopped(); time.Sleep(5 * time.Millisecond) {
		drain()
		if h, _ := srv.Header(); h.ReadersConnected == 0 {
			break
		}
	}
	drain()
	fmt.Printf("producer: published %d frames\n", published)
}
