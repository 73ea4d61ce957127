package shmq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shmq.dev/shmq"
)

// The README's cross-language example: the C ticker producer
// (ffi/c/examples/ticker_producer.c, built by ffi/c's Makefile) feeds the
// Go ticker consumer (examples/ticker-consumer), each its own process.
func TestTickerExample(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := func(name string, args ...string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("make", "-s", "-C", "../c", "examples")
	consumerBin := filepath.Join(t.TempDir(), "ticker-consumer")
	run("go", "build", "-o", consumerBin, "./examples/ticker-consumer")

	tg := target(t)
	const count = 2000
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var consumerOut, producerOut bytes.Buffer
	consumer := exec.CommandContext(ctx, consumerBin, string(tg))
	consumer.Stdout = &consumerOut
	consumer.Stderr = &consumerOut
	if err := consumer.Start(); err != nil {
		t.Fatal(err)
	}
	producer := exec.CommandContext(ctx, "../c/build/ticker_producer", string(tg), fmt.Sprint(count))
	producer.Stdout = &producerOut
	producer.Stderr = &producerOut
	if err := producer.Run(); err != nil {
		t.Fatalf("producer: %v\n%s", err, producerOut.String())
	}
	if err := consumer.Wait(); err != nil {
		t.Fatalf("consumer: %v\n%s", err, consumerOut.String())
	}

	if got := strings.TrimSpace(producerOut.String()); got != fmt.Sprintf("published %d ticks", count) {
		t.Fatalf("producer said %q", got)
	}
	lines := strings.Split(strings.TrimSpace(consumerOut.String()), "\n")
	if len(lines) != count+1 || lines[count] != fmt.Sprintf("received %d ticks", count) {
		t.Fatalf("consumer printed %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	for i, line := range lines[:count] {
		var seq int
		var sym string
		var price float64
		if _, err := fmt.Sscanf(line, "tick %d %s %g", &seq, &sym, &price); err != nil || seq != i || price < 100 {
			t.Fatalf("line %d: %q (%v)", i, line, err)
		}
	}
	// The consumer removed the queue when it was done.
	if _, err := shmq.OpenAt(tg); !errors.Is(err, shmq.ErrNotFound) {
		t.Fatalf("the queue is still there: %v", err)
	}
}
