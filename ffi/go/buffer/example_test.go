package buffer_test

import (
	"context"
	"fmt"

	"shmq.dev/shmq/buffer"
)

// Batches of three, and a last, shorter one on Close.
func ExampleNewBuffer() {
	buf, err := buffer.NewBuffer(buffer.Config[string]{
		Capacity: 3,
		Flush: func(ctx context.Context, batch []string) error {
			fmt.Println(batch) // copy batch to keep it: its array is reused
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	done := make(chan error)
	go func() { done <- buf.Run(context.Background()) }()
	for _, s := range []string{"a", "b", "c", "d"} {
		if err := buf.Add(context.Background(), s); err != nil {
			panic(err)
		}
	}
	buf.Close()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// [a b c]
	// [d]
}
