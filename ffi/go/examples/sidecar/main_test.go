package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The test binary doubles as the application process (run re-executes
// itself with -app).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-app" {
		appMain()
		return
	}
	os.Exit(m.Run())
}

// The sidecar runs to completion on its own: every record flushed, no
// request over the limit, nothing rejected or dropped.
func TestSidecar(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, 2000); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	if !strings.Contains(s, "sidecar: 2000 records in ") {
		t.Fatalf("no summary:\n%s", s)
	}
	if strings.Contains(s, "rejected") || strings.Contains(s, "dropped") {
		t.Fatalf("records rejected or dropped:\n%s", s)
	}
	var largest, limit int
	summary := s[strings.LastIndex(s, "the largest "):]
	if _, err := fmt.Sscanf(summary, "the largest %d bytes (limit %d)", &largest, &limit); err != nil || largest > limit || limit != maxBytes {
		t.Fatalf("summary %q (largest %d, limit %d, %v)", summary, largest, limit, err)
	}
}
