package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"shmq.dev/shmq"
)

func check(t *testing.T, udp bool) {
	var out bytes.Buffer
	c, err := run(&out, 300*time.Millisecond, 2, udp)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if c.Produced == 0 || c.Consumed != c.Produced || c.Bad != 0 {
		t.Fatalf("counts %+v", c)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("%d consumed, 0 bad", c.Consumed)) {
		t.Fatalf("no summary:\n%s", out.String())
	}
	// The queue was removed.
	tg := shmq.Posix(fmt.Sprintf("shmq-packet-pipeline-%d", os.Getpid()))
	if q, err := shmq.OpenAt(tg); !errors.Is(err, shmq.ErrNotFound) {
		if q != nil {
			_ = q.Close()
		}
		_ = shmq.UnlinkForce(tg)
		t.Fatalf("queue left behind: %v", err)
	}
}

func TestPipelineSynthetic(t *testing.T) { check(t, false) }

func TestPipelineUDP(t *testing.T) { check(t, true) }

// The checksum catches a changed byte.
func TestPacketChecksum(t *testing.T) {
	p := make([]byte, 100)
	fill(p, 100, 7)
	if !valid(p) {
		t.Fatal("a filled packet is not valid")
	}
	p[20] ^= 1
	if valid(p) {
		t.Fatal("a corrupted packet passed")
	}
	if valid(p[:minSize-1]) {
		t.Fatal("a short packet passed")
	}
}
