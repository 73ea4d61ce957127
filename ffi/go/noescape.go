//go:build go1.22

package shmq

// Go 1.22 and later: the queue and log operations neither keep Go pointers nor call
// back into Go, so their buffers and outputs may stay on the Go stack (no
// allocation per call) and the runtime may skip callback bookkeeping. So
// too the batch helpers of zerocopy.go (go_enqueue_batch, go_dequeue_batch_*),
// which read and write Go memory only during the call, even while they wait
// (a goroutine's stack does not move while it is in C).

/*
#cgo noescape shmq_queue_enqueue_try
#cgo noescape shmq_queue_enqueue_shift
#cgo noescape shmq_queue_dequeue_try
#cgo noescape shmq_queue_is_closed
#cgo noescape shmq_queue_len
#cgo noescape shmq_queue_stats
#cgo nocallback shmq_queue_enqueue_try
#cgo nocallback shmq_queue_enqueue_shift
#cgo nocallback shmq_queue_dequeue_try
#cgo nocallback shmq_queue_is_closed
#cgo nocallback shmq_queue_len
#cgo nocallback shmq_queue_stats
#cgo noescape shmq_log_publish
#cgo noescape shmq_log_next_seq
#cgo noescape shmq_log_stats
#cgo noescape shmq_subscriber_recv_try
#cgo noescape shmq_subscriber_position
#cgo noescape shmq_subscriber_lag
#cgo nocallback shmq_log_publish
#cgo nocallback shmq_log_next_seq
#cgo nocallback shmq_log_stats
#cgo nocallback shmq_subscriber_recv_try
#cgo nocallback shmq_subscriber_position
#cgo nocallback shmq_subscriber_lag
#cgo noescape go_enqueue_batch
#cgo noescape go_dequeue_batch_once
#cgo noescape go_dequeue_batch_wait
#cgo nocallback go_enqueue_batch
#cgo nocallback go_dequeue_batch_once
#cgo nocallback go_dequeue_batch_wait


#include "shmq.h"
*/
import "C"
