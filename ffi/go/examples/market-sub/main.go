// Command market-sub reads the quotes that examples/market_pub.rs publishes
// to a fan-out log and prints, every second, its rate, the latency
// percentiles and what it lost to lag; at the end (the log closed, or -secs
// passed) it prints what it received and a latency histogram over the whole
// run (p50, p90, p99, p99.9, max), the same lines as the Rust
// (examples/market_sub.rs) and C (ffi/c/examples/market_sub.c) subscribers:
//
//	received N quotes, lost L to lag, G unexplained gaps, first F
//	latency from scheduled send (N quotes): p50 .. us  p90 .. us  p99 .. us  p99.9 .. us  max .. us
//
// Latency is the receive time minus the quote's ts_ns, the time the quote
// was scheduled to be sent, so a stall counts against every quote it
// delays. -name reads through a durable named cursor (market_pub -cursors
// creates it at the start of a reliable log: every quote arrives, in
// order), committed every 1000 quotes (a reliable log's publisher waits for
// the committed position); without it, reading starts at the latest quote. -slow pauses
// 1 ms every 20 quotes to show Lagged in overwrite mode.
//
//	cargo run --release --example market_pub -- --rate 100000 --secs 10 &
//	go run ./examples/market-sub [-target shmq-market] [-name CURSOR] [-slow] [-secs N]
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/bits"
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
	name := flag.String("name", "", "read through this durable named cursor")
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
	var sub *shmq.Subscriber
	if *name != "" {
		sub, err = log.SubscribeNamed(*name, shmq.StartLatest)
	} else {
		sub, err = log.Subscribe(shmq.StartLatest)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer sub.Close()
	fmt.Printf("subscribed to %s at position %d (slow: %v)\n", *target, sub.Position(), *slow)

	buf := make([]byte, log.SlotSize())
	var lat []time.Duration
	var received, lost, total, totalLost, gaps, next, first uint64
	var hist histogram
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
			now, ts := monoNow(), binary.LittleEndian.Uint64(buf[0:8])
			latency := uint64(0)
			if now > ts {
				latency = now - ts
			}
			lat = append(lat, time.Duration(latency))
			hist.record(latency)
			seq := binary.LittleEndian.Uint64(buf[8:16])
			if total == 0 {
				first = seq
			} else if seq != next {
				gaps++ // a quote lost without a Lagged saying so: must never happen
			}
			next, received, total = seq+1, received+1, total+1
			// A named cursor gates a reliable log's publisher by its
			// committed position: commit as we go, not only at the end.
			if *name != "" && total%1000 == 0 {
				if err := sub.Commit(); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
			}
			if *slow && total%20 == 0 {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		break
	}
	if *name != "" {
		if err := sub.Commit(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	firstText := "-"
	if total > 0 {
		firstText = fmt.Sprint(first)
	}
	fmt.Printf("received %d quotes, lost %d to lag, %d unexplained gaps, first %s\n", total, totalLost, gaps, firstText)
	us := func(v uint64) float64 { return float64(v) / 1e3 }
	fmt.Printf("latency from scheduled send (%d quotes): p50 %.2f us  p90 %.2f us  p99 %.2f us  p99.9 %.2f us  max %.2f us\n",
		hist.n, us(hist.quantile(0.50)), us(hist.quantile(0.90)), us(hist.quantile(0.99)), us(hist.quantile(0.999)), us(hist.max))
}

// histogram counts latencies in ns: values below 128 have a bucket each;
// above, each power of two is split into 64 buckets (at most 1.6% wide).
// A percentile is the top of its bucket; the maximum is exact. The same
// histogram as the Rust and C subscribers'.
type histogram struct {
	counts [128 + 57*64]uint64
	n, max uint64
}

func bucket(v uint64) int {
	if v < 128 {
		return int(v)
	}
	e := 63 - bits.LeadingZeros64(v) // 7..63
	m := int(v >> (e - 6))           // 64..127
	return 128 + (e-7)*64 + (m - 64)
}

func bucketTop(i int) uint64 {
	if i < 128 {
		return uint64(i)
	}
	e := (i-128)/64 + 7
	m := uint64((i-128)%64 + 64)
	if m+1 == 128 && e == 63 {
		return math.MaxUint64
	}
	return (m+1)<<(e-6) - 1
}

func (h *histogram) record(v uint64) {
	h.counts[bucket(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// quantile is the top of the bucket holding the ceil(q*n)-th smallest
// value (at most the maximum); 0 when empty.
func (h *histogram) quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if top := bucketTop(i); top < h.max {
				return top
			}
			return h.max
		}
	}
	return h.max
}
