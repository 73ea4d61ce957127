//! The async API (feature `async`) under tokio: cross-process wakes of
//! async subscribers and consumers, waits for room, many idle tasks,
//! close, and cancellation (dropped futures lose no message).
#![cfg(feature = "async")]

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use common::{make_msg, posix, Proc};
use shmq::{Log, LogConfig, LogMode, Queue, QueueConfig, RecvError, Start, Target};

common::child_roles! {
    "publish" => publish_child,
    "enqueue" => enqueue_child,
}

/// Every wait in these tests ends by this, whatever happens.
const WAIT: Duration = Duration::from_secs(10);
/// Messages the children send.
const CHILD_MSGS: u64 = 20;

/// Opens log `args[0]`, waits `args[1]` ms (the parent is parked by then),
/// then publishes CHILD_MSGS messages 2 ms apart.
fn publish_child(args: &[String]) {
    let log = Log::open(&Target::Posix(args[0].clone())).unwrap();
    std::thread::sleep(Duration::from_millis(args[1].parse().unwrap()));
    for seq in 0..CHILD_MSGS {
        log.publish_block(&make_msg(1, seq, 32), Some(WAIT))
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("RESULT published");
}

/// As `publish_child`, for queue `args[0]`.
fn enqueue_child(args: &[String]) {
    let q = Queue::open(&Target::Posix(args[0].clone())).unwrap();
    std::thread::sleep(Duration::from_millis(args[1].parse().unwrap()));
    for seq in 0..CHILD_MSGS {
        q.enqueue_block(&make_msg(1, seq, 32), Some(WAIT)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("RESULT enqueued");
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Polls `f` once with a waker that does nothing, and returns whether it
/// was pending (it then holds a registration, which dropping it removes).
fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Arc::new(Nop).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    f.as_mut().poll(&mut cx)
}

#[test]
fn a_child_process_wakes_an_async_subscriber() {
    for single in [false, true] {
        let name = common::unique("async-sub");
        let t = common::Guard(Target::Posix(name.clone()));
        let log = Log::create(&t, &LogConfig::new(64, 64).single_publisher(single)).unwrap();
        let mut sub = log.subscribe(Start::Latest).unwrap();
        let mut child = Proc::spawn("publish", &[name.clone(), "100".into()]);
        let rt = current_thread();
        rt.block_on(async {
            let mut buf = [0u8; 64];
            for seq in 0..CHILD_MSGS {
                let n = tokio::time::timeout(WAIT, sub.recv_async(&mut buf))
                    .await
                    .expect("woken before the timeout")
                    .unwrap();
                assert_eq!(&buf[..n], &make_msg(1, seq, 32)[..], "single={single}");
            }
        });
        child.wait_ok(WAIT);
    }
}

#[test]
fn a_child_process_wakes_an_async_consumer() {
    for spsc in [false, true] {
        let name = common::unique("async-deq");
        let t = common::Guard(Target::Posix(name.clone()));
        let q = Queue::create(&t, &QueueConfig::new(64, 64).spsc(spsc)).unwrap();
        let mut child = Proc::spawn("enqueue", &[name.clone(), "100".into()]);
        let rt = current_thread();
        rt.block_on(async {
            let mut buf = [0u8; 64];
            for seq in 0..CHILD_MSGS {
                let n = tokio::time::timeout(WAIT, q.dequeue_async(&mut buf))
                    .await
                    .expect("woken before the timeout")
                    .unwrap();
                assert_eq!(&buf[..n], &make_msg(1, seq, 32)[..], "spsc={spsc}");
            }
        });
        child.wait_ok(WAIT);
    }
}

/// A producer task fills a small queue and waits for room while a consumer
/// task drains it, both async: every message arrives once, in order.
#[test]
fn async_enqueue_waits_while_full_and_dequeue_while_empty() {
    const N: u64 = 2_000;
    for spsc in [false, true] {
        let t = posix("async-full");
        let q = Queue::create(&t, &QueueConfig::new(16, 4).spsc(spsc)).unwrap();
        let rt = multi_thread();
        rt.block_on(async {
            let (mut producer, mut consumer) = if spsc {
                let p = Queue::open(&t).unwrap().into_producer().unwrap();
                let c = Queue::open(&t).unwrap().into_consumer().unwrap();
                (Some(p), Some(c))
            } else {
                (None, None)
            };
            let q2 = Queue::open(&t).unwrap();
            let produce = tokio::spawn(async move {
                for i in 0..N {
                    let msg = i.to_le_bytes();
                    let r = match producer.as_mut() {
                        Some(p) => p.enqueue_async(&msg).await,
                        None => q2.enqueue_async(&msg).await,
                    };
                    r.unwrap();
                }
            });
            let mut buf = [0u8; 16];
            for i in 0..N {
                let r = match consumer.as_mut() {
                    Some(c) => tokio::time::timeout(WAIT, c.dequeue_async(&mut buf)).await,
                    None => tokio::time::timeout(WAIT, q.dequeue_async(&mut buf)).await,
                };
                let n = r.expect("a message before the timeout").unwrap();
                assert_eq!(u64::from_le_bytes(buf[..n].try_into().unwrap()), i);
            }
            tokio::time::timeout(WAIT, produce).await.unwrap().unwrap();
        });
        // The queue is full: an enqueue that is dropped while it waits
        // enqueues nothing.
        for i in 0..4u64 {
            q.enqueue_try(&i.to_le_bytes()).unwrap();
        }
        assert!(poll_once(q.enqueue_async(b"dropped")).is_pending());
        let mut buf = [0u8; 16];
        for i in 0..4u64 {
            let n = q.dequeue_try(&mut buf).unwrap();
            assert_eq!(&buf[..n], &i.to_le_bytes());
        }
        assert_eq!(q.dequeue_try(&mut buf), Err(RecvError::Empty));
    }
}

/// Hundreds of idle tasks, on one shared word and on over 127 distinct
/// words (several waiter threads), are all woken by their publishes.
#[test]
fn many_idle_tasks_are_all_woken() {
    const SHARED: usize = 100;
    const SEPARATE: usize = 150;
    let rt = multi_thread();
    rt.block_on(async {
        let shared = Log::in_process(&LogConfig::new(8, 16).single_publisher(true)).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..SHARED {
            let mut sub = shared.subscribe(Start::Latest).unwrap();
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 8];
                let n = tokio::time::timeout(WAIT, sub.recv_async(&mut buf))
                    .await
                    .expect("woken")
                    .unwrap();
                buf[..n].to_vec()
            }));
        }
        let mut logs = Vec::new();
        for _ in 0..SEPARATE {
            let log = Log::in_process(&LogConfig::new(8, 4)).unwrap();
            let mut sub = log.subscribe(Start::Latest).unwrap();
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 8];
                let n = tokio::time::timeout(WAIT, sub.recv_async(&mut buf))
                    .await
                    .expect("woken")
                    .unwrap();
                buf[..n].to_vec()
            }));
            logs.push(log);
        }
        // Let them all park (no assertion on it: only the results count).
        tokio::time::sleep(Duration::from_millis(200)).await;
        shared.publish(b"all").unwrap();
        for log in &logs {
            log.publish(b"one").unwrap();
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let got = task.await.unwrap();
            let want: &[u8] = if i < SHARED { b"all" } else { b"one" };
            assert_eq!(got, want);
        }
    });
}

/// Receive futures that time out (`select!` and `timeout`) or are polled
/// once and dropped never take a message: the next receives get every
/// message, in order, for each kind of log and queue.
#[test]
fn dropped_futures_lose_no_message() {
    const N: u64 = 500;
    let rt = multi_thread();
    for single in [false, true] {
        let log = Log::in_process(&LogConfig::new(16, 1024).single_publisher(single)).unwrap();
        let mut sub = log.subscribe(Start::Latest).unwrap();
        // Parked, then dropped, many times over.
        rt.block_on(async {
            let mut buf = [0u8; 16];
            for _ in 0..20 {
                let r =
                    tokio::time::timeout(Duration::from_millis(1), sub.recv_async(&mut buf)).await;
                assert!(r.is_err(), "nothing was published");
            }
        });
        assert!(poll_once(sub.recv_async(&mut [0u8; 16])).is_pending());
        assert!(poll_once(sub.recv_vec_async()).is_pending());
        // A publisher thread races futures that a timer keeps cancelling.
        let publisher = {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..N {
                    log.publish(&i.to_le_bytes()).unwrap();
                    if i % 16 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
            })
        };
        rt.block_on(async {
            let mut buf = [0u8; 16];
            let mut next = 0u64;
            let mut cancelled = 0u64;
            let until = tokio::time::Instant::now() + WAIT;
            while next < N && tokio::time::Instant::now() < until {
                tokio::select! {
                    r = sub.recv_async(&mut buf) => {
                        let n = r.unwrap();
                        assert_eq!(u64::from_le_bytes(buf[..n].try_into().unwrap()), next);
                        next += 1;
                    }
                    _ = tokio::time::sleep(Duration::from_micros(200)) => cancelled += 1,
                }
            }
            assert_eq!(next, N, "single={single}, {cancelled} futures cancelled");
        });
        publisher.join().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(sub.recv_try(&mut buf), Err(RecvError::Empty));
    }
    for spsc in [false, true] {
        let q = Arc::new(Queue::in_process(&QueueConfig::new(16, 64).spsc(spsc)).unwrap());
        assert!(poll_once(q.dequeue_async(&mut [0u8; 16])).is_pending());
        let producer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                for i in 0..N {
                    q.enqueue_block(&i.to_le_bytes(), Some(WAIT)).unwrap();
                    if i % 16 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
            })
        };
        rt.block_on(async {
            let mut buf = [0u8; 16];
            let mut next = 0u64;
            let until = tokio::time::Instant::now() + WAIT;
            while next < N && tokio::time::Instant::now() < until {
                tokio::select! {
                    r = q.dequeue_async(&mut buf) => {
                        let n = r.unwrap();
                        assert_eq!(u64::from_le_bytes(buf[..n].try_into().unwrap()), next);
                        next += 1;
                    }
                    _ = tokio::time::sleep(Duration::from_micros(200)) => {}
                }
            }
            assert_eq!(next, N, "spsc={spsc}");
        });
        producer.join().unwrap();
        assert_eq!(q.dequeue_try(&mut [0u8; 16]), Err(RecvError::Empty));
    }
}

/// A message that does not fit the buffer stays where it was.
#[test]
fn a_too_small_buffer_leaves_the_message() {
    let rt = current_thread();
    let log = Log::in_process(&LogConfig::new(16, 4)).unwrap();
    let mut sub = log.subscribe(Start::Latest).unwrap();
    log.publish(b"twelve bytes").unwrap();
    rt.block_on(async {
        let mut small = [0u8; 4];
        assert_eq!(
            sub.recv_async(&mut small).await,
            Err(RecvError::BufferTooSmall { needed: 12 })
        );
        assert_eq!(sub.recv_vec_async().await.unwrap(), b"twelve bytes");
    });
}

/// `close()` from another thread wakes parked receives and dequeues.
#[test]
fn close_wakes_async_waiters() {
    let rt = multi_thread();
    for single in [false, true] {
        let log = Log::in_process(&LogConfig::new(16, 4).single_publisher(single)).unwrap();
        let mut sub = log.subscribe(Start::Latest).unwrap();
        let closer = {
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                log.close();
            })
        };
        rt.block_on(async {
            let r = tokio::time::timeout(WAIT, sub.recv_async(&mut [0u8; 16])).await;
            assert_eq!(r.expect("woken by close"), Err(RecvError::Closed));
        });
        closer.join().unwrap();
    }
    for spsc in [false, true] {
        let q = Arc::new(Queue::in_process(&QueueConfig::new(16, 4).spsc(spsc)).unwrap());
        let closer = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                q.close();
            })
        };
        rt.block_on(async {
            let r = tokio::time::timeout(WAIT, q.dequeue_async(&mut [0u8; 16])).await;
            assert_eq!(r.expect("woken by close"), Err(RecvError::Closed));
        });
        closer.join().unwrap();
    }
}

/// A reliable log's publisher waits for its slowest cursor, asynchronously.
#[test]
fn publish_async_waits_for_the_slowest_cursor() {
    let rt = multi_thread();
    for single in [false, true] {
        let log = Log::in_process(
            &LogConfig::new(16, 2)
                .mode(LogMode::Reliable)
                .single_publisher(single),
        )
        .unwrap();
        let mut sub = log.subscribe_named("slow", Start::Latest).unwrap();
        let mut publisher = log.clone().into_publisher().unwrap();
        rt.block_on(async {
            publisher.publish_async(b"a").await.unwrap();
            publisher.publish_async(b"b").await.unwrap();
            // Full until "slow" reads and commits.
            assert!(poll_once(publisher.publish_async(b"dropped")).is_pending());
            let reader = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let mut got = Vec::new();
                let mut buf = [0u8; 16];
                for _ in 0..3 {
                    let n = sub.recv_block(&mut buf, Some(WAIT)).unwrap();
                    got.push(buf[..n].to_vec());
                    sub.commit().unwrap();
                }
                got
            });
            let seq = tokio::time::timeout(WAIT, publisher.publish_async(b"c"))
                .await
                .expect("room made before the timeout")
                .unwrap();
            assert_eq!(seq, 2);
            let got = reader.join().unwrap();
            assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        });
    }
}

/// The CPUs the calling thread may run on.
fn cpus_of_this_thread() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the kernel writes into `set`.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(r, 0, "sched_getaffinity");
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: reads the set we own; the index is in range.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`.
fn pin_this_thread(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: writes the set we own; the index is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the kernel reads `set`.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(r, 0, "sched_setaffinity");
}

/// Receives one message on `sub` with a waker that records the CPU mask
/// of the thread that calls it (the waiter thread), while another thread
/// publishes on `log` once the receive is pending.
fn mask_of_the_waking_thread(log: &Log) -> Vec<usize> {
    struct Recorder {
        mask: std::sync::Mutex<Option<Vec<usize>>>,
        task: std::thread::Thread,
    }
    impl Wake for Recorder {
        fn wake(self: Arc<Self>) {
            let mut m = self.mask.lock().unwrap();
            if m.is_none() {
                *m = Some(cpus_of_this_thread());
            }
            drop(m);
            self.task.unpark();
        }
    }
    let rec = Arc::new(Recorder {
        mask: std::sync::Mutex::new(None),
        task: std::thread::current(),
    });
    let waker = Arc::clone(&rec).into();
    let mut cx = Context::from_waker(&waker);
    let mut sub = log.subscribe(Start::Latest).unwrap();
    let mut buf = [0u8; 16];
    let mut f = pin!(sub.recv_async(&mut buf));
    assert!(f.as_mut().poll(&mut cx).is_pending(), "the log is empty");
    log.publish(b"wake").unwrap();
    // Polled again only once woken: an earlier poll would take the
    // message before the waiter thread calls the waker.
    let until = std::time::Instant::now() + WAIT;
    let mask = loop {
        if let Some(mask) = rec.mask.lock().unwrap().take() {
            break mask;
        }
        assert!(std::time::Instant::now() < until, "not woken");
        std::thread::park_timeout(Duration::from_millis(10));
    };
    assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(Ok(4)));
    mask
}

/// A task polled on a thread pinned to one CPU is woken by a waiter
/// thread pinned to that CPU (the wake is a hand-off on one CPU); a task
/// polled on an unpinned thread by one that is not pinned either.
#[test]
fn a_pinned_thread_is_woken_from_its_own_cpu() {
    let log = Log::in_process(&LogConfig::new(16, 4)).unwrap();
    let all = cpus_of_this_thread();
    let cpu = *all.last().expect("some CPU");
    let pinned = std::thread::spawn({
        let log = log.clone();
        move || {
            pin_this_thread(cpu);
            mask_of_the_waking_thread(&log)
        }
    })
    .join()
    .unwrap();
    assert_eq!(pinned, vec![cpu]);
    if all.len() > 1 {
        let unpinned = std::thread::spawn(move || mask_of_the_waking_thread(&log))
            .join()
            .unwrap();
        assert_eq!(unpinned, all);
    }
}
