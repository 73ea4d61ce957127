// Command market-sub reads the quotes that examples/market_pub.rs publishes
// to a fan-out log and prints, every second, its rate, the one-way latency
// percentiles (publish to receive) and what it lost to lag. -slow pauses
// 1 ms every 20 quotes to show Lagged in overwrite mode.
//
//	cargo run --release --example market_pub -- --rate 100000 --secs 10 &
//	go run ./examples/market-sub [-target shmq-market] [-slow] [-secs N]
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"
	"unsafe"

	"shmq.dev/shmq"
)

// monoNow is CLOCK_MONOTONIC in ns, the publisher's clock: read once
// through the kernel, then advanced by Go's monotonic clock (the same one).
var monoNow = func() func() uint64 {
	var ts syscall.Timespec
	before := time.Now()
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	base := uint64(ts.Nano()) - uint64(time.Since(before)/2)
	return func() uint64 { return base + uint64(time.Since(before)) }
}()

func main() {
	target := flag.String("target", "shmq-market", "the log (a POSIX name, or posix:/file:/sysv: target)")
	slow := flag.Bool("slow", false, "pause 1 ms every 20 quotes")
	secs := flag.Int("secs", 0, "stop after this many seconds (0: when the publisher closes the log)")
	flag.Parse()
	log, err := shmq.OpenLog(shmq.Target(*target))
	for start := time.Now(); errors.Is(err, shmq.ErrNotFound) && time.Since(start) < 10*time.Second; {
		time.Sleep(20 * time.Millisecond) // the publisher creates it
		log, err = shmq.OpenLog(shmq.Target(*target))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer log.Close()
	sub, err := log.Subscribe(shmq.StartLatest)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer sub.Close()
	fmt.Printf("subscribed to %s at position %d (slow: %v)\n", *target, sub.Position(), *slow)

	buf := make([]byte, log.SlotSize())
	var lat []time.Duration
	var received, lost, total, totalLost, gaps, next uint64
	end, report := time.Now().Add(time.Duration(*secs)*time.Second), time.Now().Add(time.Second)
	for *secs == 0 || time.Now().Before(end) {
		if time.Now().After(report) && len(lat) > 0 {
			lag := sub.Lag() // before sorting, which takes a while
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
			fmt.Printf("%8d msg/s  latency p50 %7.2f us  p99 %8.2f us  lag %5d  lagged %d (total %d)\n",
				received, p(0.50), p(0.99), lag, lost, totalLost)
			lat, received, lost, report = lat[:0], 0, 0, report.Add(time.Second)
		}
		n, err := sub.RecvTimeout(buf, 100*time.Millisecond)
		var lagged *shmq.LaggedError
		switch {
		case errors.As(err, &lagged):
			lost, totalLost, next = lost+lagged.Missed, totalLost+lagged.Missed, next+lagged.Missed
			continue
		case errors.Is(err, shmq.ErrTimeout):
			continue
		case errors.Is(err, shmq.ErrClosed):
			fmt.Println("log closed")
		case err != nil:
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		case n != 48:
			fmt.Fprintf(os.Stderr, "not a quote: %d bytes\n", n)
			os.Exit(1)
		default: // ts_ns, seq, symbol[8], bid, ask, sizes: 48 bytes, little-endian
			lat = append(lat, time.Duration(monoNow()-binary.LittleEndian.Uint64(buf[0:8])))
			seq := binary.LittleEndian.Uint64(buf[8:16])
			if total > 0 && seq != next {
				gaps++ // a quote lost without a Lagged saying so: must never happen
			}
			next, received, total = seq+1, received+1, total+1
			if *slow && total%20 == 0 {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		break
	}
	fmt.Printf("received %d quotes, lost %d to lag, %d unexplained gaps\n", total, totalLost, gaps)
}
