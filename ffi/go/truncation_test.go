package shmq_test

// Truncation from a Go host. Go's runtime installs its own SIGBUS handler;
// libshmq installs its guard after it (at the first POSIX or file mapping)
// and passes on every SIGBUS that is not a truncated shmq mapping. These
// tests check both halves in child processes: a Go process attached to a
// truncated queue or log survives, and Go's own fault handling (a
// recoverable fault panic, a nil dereference, the crash report of an
// unrecovered fault) is unchanged.
//
// SHMQ_TRUNC_TRIES sets the tries per backing (default 4: each of the
// four combinations of kind and truncated size once).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"shmq.dev/shmq"
)

func init() {
	moreRoles["truncwriter"] = func(a []string) int { return truncChild(a[0], a[1], true) }
	moreRoles["truncreader"] = func(a []string) int { return truncChild(a[0], a[1], false) }
	moreRoles["gofaults"] = goFaultsChild
	moreRoles["gofaultcrash"] = goFaultCrashChild
}

const truncOp = 10 * time.Millisecond

// truncChild attaches to target (kind "queue" or "log") as writer or
// reader, prints READY, and loops until its standard input closes (the
// parent truncated), then 20 more operations, or until an operation says
// ErrCorrupt. Prints "RESULT corrupt=0|1" and exits 0.
func truncChild(tg, kind string, writer bool) int {
	var op func() error
	var closeAll func()
	msg, buf := make([]byte, 48), make([]byte, 64)
	if kind == "queue" {
		q, err := shmq.OpenAt(shmq.Target(tg))
		if err != nil {
			fmt.Fprintln(os.Stderr, "truncChild:", err)
			return 3
		}
		closeAll = func() { _ = q.Close() }
		if writer {
			op = func() error { return q.EnqueueTimeout(msg, truncOp) }
		} else {
			op = func() error { _, err := q.DequeueTimeout(buf, truncOp); return err }
		}
	} else {
		l, err := shmq.OpenLog(shmq.Target(tg))
		if err != nil {
			fmt.Fprintln(os.Stderr, "truncChild:", err)
			return 3
		}
		if writer {
			closeAll = func() { _ = l.Close() }
			op = func() error { _, err := l.Publish(msg); return err }
		} else {
			sub, err := l.Subscribe(shmq.StartOldest)
			if err != nil {
				fmt.Fprintln(os.Stderr, "truncChild:", err)
				return 3
			}
			closeAll = func() { _ = sub.Close(); _ = l.Close() }
			op = func() error { _, err := sub.RecvTimeout(buf, truncOp); return err }
		}
	}
	var told atomic.Bool
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); told.Store(true) }()
	fmt.Println("READY")
	corrupt, after := false, 20
	for end := time.Now().Add(10 * time.Second); after > 0 && time.Now().Before(end); {
		if errors.Is(op(), shmq.ErrCorrupt) {
			corrupt = true
			break
		}
		if told.Load() {
			after--
		}
	}
	closeAll()
	if after > 0 && !corrupt {
		fmt.Fprintln(os.Stderr, "truncChild: never told of the truncation")
		return 2
	}
	fmt.Printf("RESULT corrupt=%v\n", corrupt)
	return 0
}

// truncKid is a child with its standard input and output piped.
type truncKid struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func spawnTruncKid(t *testing.T, role string, args ...string) *truncKid {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "SHMQ_GO_TEST_ARGS="+strings.Join(args, ","))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return &truncKid{cmd, stdin, lines}
}

// line waits at most d for the child's next line ("" at end of output).
func (k *truncKid) line(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l := <-k.lines:
		return l
	case <-time.After(d):
		t.Fatalf("child %v said nothing within %v", k.cmd.Args, d)
		return ""
	}
}

// wait returns the child's exit error (nil: exit 0), killing it after d.
func (k *truncKid) wait(d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- k.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = k.cmd.Process.Kill()
		return fmt.Errorf("hung, killed after %v", d)
	}
}

func truncTries() int {
	if n, err := strconv.Atoi(os.Getenv("SHMQ_TRUNC_TRIES")); err == nil && n > 0 {
		return n
	}
	return 4
}

// A Go writer and a Go reader on a queue or a log survive its truncation,
// to 0 bytes or to half its size, on POSIX and file backings.
func TestTruncationKillsNoGoProcess(t *testing.T) {
	tries := truncTries()
	for _, backing := range []string{"posix", "file"} {
		deaths, corrupt := 0, 0
		for i := 0; i < tries; i++ {
			name := fmt.Sprintf("shmq-gotest-trunc-%d-%d", os.Getpid(), counter.Add(1))
			tg, path := shmq.Posix(name), "/dev/shm/"+name
			if backing == "file" {
				path = filepath.Join(os.TempDir(), name)
				tg = shmq.File(path)
			}
			kind := []string{"queue", "log"}[i%2]
			var closeMine func() error
			var err error
			if kind == "queue" {
				var q *shmq.Queue
				q, err = shmq.CreateAt(tg, shmq.WithSlotSize(64), shmq.WithCapacity(256))
				closeMine = func() error { return q.Close() }
			} else {
				var l *shmq.Log
				l, err = shmq.CreateLog(tg, shmq.WithSlotSize(64), shmq.WithCapacity(256))
				closeMine = func() error { return l.Close() }
			}
			if err != nil {
				t.Fatal(err)
			}
			kids := []*truncKid{
				spawnTruncKid(t, "truncwriter", string(tg), kind),
				spawnTruncKid(t, "truncreader", string(tg), kind),
			}
			for _, k := range kids {
				if l := k.line(t, 10*time.Second); l != "READY" {
					_ = shmq.Unlink(tg)
					t.Fatalf("%s: child said %q, not READY", tg, l)
				}
			}
			_ = closeMine()
			time.Sleep(time.Duration(i%4) * time.Millisecond)
			size := int64(0)
			if (i/2)%2 == 1 {
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				size = st.Size() / 2
			}
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			_ = shmq.Unlink(tg)
			for _, k := range kids {
				_ = k.stdin.Close()
			}
			for _, k := range kids {
				// A death is a kill by signal, or Go's crash report on a fault
				// in cgo code ("signal arrived during cgo execution", exit 2).
				if err := k.wait(20 * time.Second); err != nil {
					deaths++
					t.Errorf("%s %s: %s: %v", tg, kind, k.cmd.Env[len(k.cmd.Env)-2], err)
				}
				for l := range k.lines {
					if l == "RESULT corrupt=true" {
						corrupt++
					}
				}
			}
		}
		t.Logf("Go truncation %s: tries=%d deaths=%d corrupt=%d", backing, tries, deaths, corrupt)
	}
}

// goFaultsChild attaches to a POSIX queue (so libshmq's guard is
// installed over Go's handler), checks Go's own fault handling, then that
// the guard still rescues a truncation of that queue.
func goFaultsChild(a []string) int {
	q, err := shmq.CreateAt(shmq.Target(a[0]), shmq.WithSlotSize(64), shmq.WithCapacity(8))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer func() { _ = q.Close() }()
	defer func() { _ = q.Delete() }()

	// A nil dereference (SIGSEGV) is still a recoverable panic.
	if r := recovered(func() {
		var p *int
		_ = *p
	}); r == nil || !strings.Contains(fmt.Sprint(r), "nil pointer") {
		fmt.Fprintln(os.Stderr, "nil dereference: recovered", r)
		return 1
	}

	// A SIGBUS in Go's own mapping (not shmq's) goes to Go's handler,
	// which turns it into a recoverable panic under SetPanicOnFault.
	mem, err := truncatedMapping(a[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	old := debug.SetPanicOnFault(true)
	r := recovered(func() { sink = mem[4096] })
	debug.SetPanicOnFault(old)
	// Go's panic for a fault at an address (runtime.Error with Addr).
	addr, ok := r.(interface{ Addr() uintptr })
	if !ok || addr.Addr() != uintptr(unsafe.Pointer(&mem[4096])) {
		fmt.Fprintf(os.Stderr, "SIGBUS in Go's mapping: recovered %v\n", r)
		return 1
	}

	// The queue still works after Go's faults.
	if err := q.TryEnqueue([]byte("x")); err != nil {
		fmt.Fprintln(os.Stderr, "enqueue after the faults:", err)
		return 1
	}
	// And the guard is still in place: truncating the queue's segment and
	// touching it is survived (the result does not matter).
	if err := os.Truncate("/dev/shm/"+strings.TrimPrefix(a[0], "posix:"), 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	buf := make([]byte, 64)
	_, _ = q.TryDequeue(buf)
	_ = q.TryEnqueue([]byte("y"))
	fmt.Println("OK")
	return 0
}

// goFaultCrashChild touches a truncated Go mapping without SetPanicOnFault:
// Go's handler must report it (exit 2, "unexpected fault address").
func goFaultCrashChild(a []string) int {
	q, err := shmq.CreateAt(shmq.Target(a[0]), shmq.WithSlotSize(64), shmq.WithCapacity(8))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	_ = q.Delete()
	mem, err := truncatedMapping(a[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	fmt.Println(mem[4096])
	return 0
}

// truncatedMapping maps 8 KiB of a new file at path and truncates the file
// to 0: every access to the mapping then raises SIGBUS.
func truncatedMapping(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer os.Remove(path)
	if err := f.Truncate(8192); err != nil {
		return nil, err
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 8192, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return mem, f.Truncate(0)
}

// sink keeps a read from being optimised away.
var sink byte

func recovered(f func()) (r any) {
	defer func() { r = recover() }()
	f()
	return nil
}

// With libshmq's guard installed, Go's own fault handling is unchanged.
func TestGoFaultHandlingUnderTheGuard(t *testing.T) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("shmq-gotest-fault-%d-%d", os.Getpid(), counter.Add(1)))
	t.Cleanup(func() { _ = os.Remove(path) })
	k := spawnTruncKid(t, "gofaults", string(target(t)), path)
	_ = k.stdin.Close()
	if err := k.wait(20 * time.Second); err != nil {
		t.Fatalf("gofaults child: %v", err)
	}
	if l := k.line(t, time.Second); l != "OK" {
		t.Fatalf("gofaults child said %q", l)
	}

	// An unrecovered SIGBUS outside shmq: Go's crash report, exit status 2
	// (not a silent death by signal, which would mean Go's handler was skipped).
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=gofaultcrash",
		"SHMQ_GO_TEST_ARGS="+string(target(t))+","+path+"-crash")
	t.Cleanup(func() { _ = os.Remove(path + "-crash") })
	done := make(chan []byte, 1)
	go func() { out, _ := cmd.CombinedOutput(); done <- out }()
	var out []byte
	select {
	case out = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("gofaultcrash child hung")
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 ||
		!strings.Contains(string(out), "unexpected fault address") ||
		!strings.Contains(string(out), "SIGBUS") {
		t.Fatalf("gofaultcrash child: exit %d, output:\n%s", code, out)
	}
}
