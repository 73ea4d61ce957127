package shmq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
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

// targetDir is where cargo put the Rust examples: $SHMQ_TARGET_DIR (the
// test command builds in target/test-release), else ../../target/release.
func targetDir() string {
	if dir := os.Getenv("SHMQ_TARGET_DIR"); dir != "" {
		return dir
	}
	return "../../target/release"
}

// The market-data example across languages: the Rust publisher
// (examples/market_pub.rs, built by `cargo build --release --examples`, or
// in $SHMQ_TARGET_DIR by scripts/test.sh) and two Go subscribers
// (examples/market-sub), one deliberately slow. Every quote published after
// a subscriber joined is either received or counted as lost to lag, and the
// slow one must lag.
func TestMarketSubExample(t *testing.T) {
	pub, err := filepath.Abs(filepath.Join(targetDir(), "examples", "market_pub"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pub); err != nil {
		t.Fatalf("%v: run `cargo build --release --examples` first", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sub := filepath.Join(t.TempDir(), "market-sub")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", sub, "./examples/market-sub").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	tg := target(t)
	start := func(out *bytes.Buffer, name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	var pubOut, fastOut, slowOut bytes.Buffer
	p := start(&pubOut, pub, "--target", string(tg), "--rate", "50000", "--secs", "3", "--capacity", "1024")
	fast := start(&fastOut, sub, "-target", string(tg))
	slow := start(&slowOut, sub, "-target", string(tg), "-slow")
	for _, c := range []struct {
		cmd *exec.Cmd
		out *bytes.Buffer
	}{{p, &pubOut}, {fast, &fastOut}, {slow, &slowOut}} {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("%s: %v\n%s", c.cmd.Path, err, c.out.String())
		}
	}
	var published uint64
	if i := strings.Index(pubOut.String(), "done: "); i < 0 {
		t.Fatalf("publisher said %q", pubOut.String())
	} else {
		fmt.Sscanf(pubOut.String()[i:], "done: %d published", &published)
	}
	lost := map[string]uint64{}
	for name, out := range map[string]string{"fast": fastOut.String(), "slow": slowOut.String()} {
		t.Logf("%s subscriber:\n%s", name, out)
		var from, received, lagged, gaps uint64
		i, j := strings.Index(out, " at position "), strings.Index(out, "received ")
		if i < 0 || j < 0 {
			t.Fatalf("%s subscriber printed %q", name, out)
		}
		fmt.Sscanf(out[i:], " at position %d", &from)
		fmt.Sscanf(out[j:], "received %d quotes, lost %d to lag, %d unexplained gaps", &received, &lagged, &gaps)
		if gaps != 0 || received == 0 || received+lagged != published-from {
			t.Fatalf("%s subscriber: from %d, received %d + lagged %d, gaps %d; %d published",
				name, from, received, lagged, gaps, published)
		}
		if !strings.Contains(out, "latency p50") {
			t.Fatalf("%s subscriber printed no report", name)
		}
		lost[name] = lagged
	}
	if lost["slow"] == 0 {
		t.Fatal("the slow subscriber never lagged")
	}
}
