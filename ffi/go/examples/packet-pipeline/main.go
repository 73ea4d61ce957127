// Command packet-pipeline is a zero-copy packet pipeline on a shmq work
// queue: a reader goroutine reserves a slot per packet and fills it in place
// (a synthetic packet, or with -udp a datagram read from a loopback UDP
// socket straight into the reserved slice), commits it, and worker
// goroutines consume each packet in place, verify its CRC-32 and release
// the slot. No packet is copied between the reader and the workers.
//
// Packet format: seq (8 bytes, little endian), payload, CRC-32 (IEEE) of
// seq and payload (4 bytes, little endian).
//
// It runs for -duration (default 1 s), closes the queue, lets the workers
// drain it, prints the counts, and removes the queue.
//
//	go run ./examples/packet-pipeline -workers 2 -duration 1s [-udp]
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"shmq.dev/shmq"
)

const (
	slotSize = 512 // the largest packet
	minSize  = 8 + 4
)

// Counts are what a run did.
type Counts struct {
	Produced uint64 // packets committed by the reader
	Consumed uint64 // packets consumed by the workers
	Bad      uint64 // consumed packets whose checksum failed
	Bytes    uint64 // bytes consumed
}

// fill writes a packet of n bytes (n >= minSize) with sequence number seq
// into p[:n] in place.
func fill(p []byte, n int, seq uint64) {
	binary.LittleEndian.PutUint64(p, seq)
	for i := 8; i < n-4; i++ {
		p[i] = byte(seq) + byte(i)
	}
	binary.LittleEndian.PutUint32(p[n-4:], crc32.ChecksumIEEE(p[:n-4]))
}

// valid reports whether p is a whole packet with a correct checksum.
func valid(p []byte) bool {
	if len(p) < minSize {
		return false
	}
	return crc32.ChecksumIEEE(p[:len(p)-4]) == binary.LittleEndian.Uint32(p[len(p)-4:])
}

// readSynthetic produces packets of varying size in place until stop.
func readSynthetic(q *shmq.Queue, stop <-chan struct{}, produced *uint64) error {
	for seq := uint64(0); ; seq++ {
		select {
		case <-stop:
			return nil
		default:
		}
		r, err := q.ReserveTimeout(slotSize, 100*time.Millisecond)
		if errors.Is(err, shmq.ErrTimeout) {
			continue // workers behind: look at stop again
		}
		if err != nil {
			return err
		}
		n := minSize + int(seq*37%uint64(slotSize-minSize+1))
		fill(r.Bytes(), n, seq)
		if err := r.Commit(n); err != nil {
			return err
		}
		atomic.AddUint64(produced, 1)
	}
}

// readUDP reads datagrams from conn straight into reserved slots until
// stop; a sender goroutine feeds conn over loopback.
func readUDP(q *shmq.Queue, conn *net.UDPConn, stop <-chan struct{}, produced *uint64) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		r, err := q.ReserveTimeout(slotSize, 100*time.Millisecond)
		if errors.Is(err, shmq.ErrTimeout) {
			continue
		}
		if err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := conn.Read(r.Bytes()) // the datagram lands in the slot
		if err != nil {
			r.Cancel()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if err := r.Commit(n); err != nil {
			return err
		}
		atomic.AddUint64(produced, 1)
	}
}

// sendUDP sends packets to addr until stop, pacing itself a little so that
// the loopback socket's buffer is not the bottleneck.
func sendUDP(addr *net.UDPAddr, stop <-chan struct{}) error {
	conn, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	p := make([]byte, slotSize)
	for seq := uint64(0); ; seq++ {
		select {
		case <-stop:
			return nil
		default:
		}
		n := minSize + int(seq*37%uint64(slotSize-minSize+1))
		fill(p, n, seq)
		if _, err := conn.Write(p[:n]); err != nil {
			return err
		}
		if seq%64 == 63 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// work consumes packets in place until the queue is closed and drained.
func work(q *shmq.Queue, c *Counts) error {
	for {
		m, err := q.ConsumeTimeout(100 * time.Millisecond)
		if errors.Is(err, shmq.ErrTimeout) {
			continue
		}
		if errors.Is(err, shmq.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		p := m.Bytes()
		if !valid(p) {
			atomic.AddUint64(&c.Bad, 1)
		}
		atomic.AddUint64(&c.Bytes, uint64(len(p)))
		atomic.AddUint64(&c.Consumed, 1)
		m.Release()
	}
}

// run runs the pipeline for d with the given number of workers, prints its
// counts to w, and returns them. The queue is removed before it returns.
func run(w io.Writer, d time.Duration, workers int, udp bool) (Counts, error) {
	var c Counts
	tg := shmq.Posix(fmt.Sprintf("shmq-packet-pipeline-%d", os.Getpid()))
	q, err := shmq.CreateAt(tg, shmq.WithSlotSize(slotSize), shmq.WithCapacity(256))
	if err != nil {
		return c, err
	}
	defer func() { _ = q.Delete(); _ = q.Close() }()

	errs := make(chan error, workers+2)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- work(q, &c) }()
	}
	stop := make(chan struct{})
	var readErr error
	start := time.Now()
	timer := time.AfterFunc(d, func() { close(stop) })
	defer timer.Stop()
	if udp {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			_ = q.CloseQueue()
			return c, err
		}
		defer conn.Close()
		_ = conn.SetReadBuffer(1 << 20)
		var sw sync.WaitGroup
		sw.Add(1)
		go func() { defer sw.Done(); errs <- sendUDP(conn.LocalAddr().(*net.UDPAddr), stop) }()
		readErr = readUDP(q, conn, stop, &c.Produced)
		sw.Wait()
	} else {
		readErr = readSynthetic(q, stop, &c.Produced)
	}
	if err := q.CloseQueue(); err != nil && readErr == nil {
		readErr = err
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && readErr == nil {
			readErr = err
		}
	}
	el := time.Since(start)
	fmt.Fprintf(w, "packet-pipeline: %d produced, %d consumed, %d bad, %d bytes in %v (%.0f packets/s, %d workers)\n",
		c.Produced, c.Consumed, c.Bad, c.Bytes, el.Round(time.Millisecond), float64(c.Consumed)/el.Seconds(), workers)
	if readErr == nil && (c.Consumed != c.Produced || c.Bad != 0) {
		readErr = fmt.Errorf("%d produced but %d consumed, %d bad", c.Produced, c.Consumed, c.Bad)
	}
	return c, readErr
}

func main() {
	d := flag.Duration("duration", time.Second, "how long the reader produces")
	workers := flag.Int("workers", 2, "consumer goroutines")
	udp := flag.Bool("udp", false, "read packets from a loopback UDP socket into the slots")
	flag.Parse()
	if _, err := run(os.Stdout, *d, *workers, *udp); err != nil {
		fmt.Fprintln(os.Stderr, "packet-pipeline:", err)
		os.Exit(1)
	}
}
