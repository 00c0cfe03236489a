// Command consumer reads demo-schema frames (see examples/c/README.md) from
// a shmx region with the Go binding and checks every byte:
//
//	consumer -name demo -frames 500 -send-control 3
//
// It waits for the region to appear, sends control messages "ping 0".., then
// reads frames in order (Next, sleeping in Wait) until frame number -frames,
// until the producer is gone, or until -timeout passes without a new frame.
// Exit status 0 only if every checked byte was right.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	"shmx.local/shmx"
)

const (
	streamSeq    = 1
	streamPixels = 2
	streamStamp  = 3
)

// check returns the frame's seq number, or an error saying what is wrong.
func check(fv *shmx.FrameView) (uint64, error) {
	seq, pix, stamp := fv.Stream(streamSeq), fv.Stream(streamPixels), fv.Stream(streamStamp)
	if seq == nil || pix == nil || stamp == nil || len(seq.Data) != 8 || len(stamp.Data) != 8 {
		return 0, fmt.Errorf("frame %d lacks a stream of the demo schema", fv.ID)
	}
	k := binary.LittleEndian.Uint64(seq.Data)
	bad := 0
	for i, b := range pix.Data { // pix.Data points into shared memory
		if b != byte((k+uint64(i))%251) {
			bad++
		}
	}
	t := math.Float64frombits(binary.LittleEndian.Uint64(stamp.Data))
	if t != float64(k)/1000 || fv.SimTime != t {
		bad++
	}
	if bad > 0 {
		return 0, fmt.Errorf("frame %d (seq %d): %d wrong values", fv.ID, k, bad)
	}
	return k, nil
}

func main() {
	name := flag.String("name", "shmx-c-demo", "region name")
	frames := flag.Uint64("frames", 0, "stop after this frame number (0: until the producer is gone)")
	timeout := flag.Duration("timeout", 5*time.Second, "give up after this long without a new frame")
	sendControl := flag.Int("send-control", 0, "control messages to send first")
	quiet := flag.Bool("quiet", false, "print the summary only")
	flag.Parse()

	var c *shmx.Client
	var err error
	for deadline := time.Now().Add(*timeout); ; time.Sleep(10 * time.Millisecond) {
		c, err = shmx.Open(*name, "")
		if err == nil || !errors.Is(err, shmx.ENOENT) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
	defer c.Close()
	if !*quiet {
		streams, _ := c.Streams()
		fmt.Printf("consumer (Go): attached to %q as reader %016x, libshmx %s; schema:\n", *name, c.ReaderID(), shmx.Version())
		for _, s := range streams {
			fmt.Printf("  id %d %-8s %s x %d (%d bytes per element)\n", s.ID, s.Name, shmx.DTypeName(s.DType), s.Components, s.BytesPerElem)
		}
	}
	for i := 0; i < *sendControl; i++ {
		msg := []byte(fmt.Sprintf("ping %d", i))
		for deadline := time.Now().Add(*timeout); ; time.Sleep(time.Millisecond) {
			err = c.SendControl(shmx.TLVControlUser, msg)
			if !errors.Is(err, shmx.EFULL) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "consumer:", err)
			os.Exit(1)
		}
	}

	var count, badFrames, dropped, first, last uint64
	serverGone := false
	lastNew := time.Now()
	for *frames == 0 || last < *frames {
		fv, err := c.Next()
		if err == nil {
			k, cerr := check(fv)
			if cerr != nil {
				fmt.Fprintln(os.Stderr, "consumer:", cerr)
				badFrames++
				continue
			}
			if first == 0 {
				first = k
			}
			last, count, dropped, lastNew = k, count+1, dropped+fv.Dropped, time.Now()
			if !*quiet && (count <= 3 || count%100 == 0) {
				fmt.Printf("consumer: frame %d seq %d, %d bytes, dropped %d\n", fv.ID, k, fv.PayloadBytes, fv.Dropped)
			}
			continue
		}
		if !errors.Is(err, shmx.EAGAIN) {
			fmt.Fprintln(os.Stderr, "consumer:", err)
			badFrames++
			break
		}
		if serverGone {
			break // drained what the producer left
		}
		if time.Since(lastNew) > *timeout {
			fmt.Fprintf(os.Stderr, "consumer: no new frame for %v\n", *timeout)
			break
		}
		if err := c.Wait(100 * time.Millisecond); errors.Is(err, shmx.ECLOSED) {
			serverGone = true
		}
	}
	gone := ""
	if serverGone {
		gone = ", producer gone"
	}
	fmt.Printf("consumer: %d frames verified (seq %d..%d), %d dropped, %d bad frames%s\n",
		count, first, last, dropped, badFrames, gone)
	if count == 0 || badFrames > 0 || (*frames > 0 && last < *frames) {
		os.Exit(1)
	}
}
