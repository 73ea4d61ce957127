//! A packet pipeline without copies: a reader receives UDP datagrams
//! straight into reserved queue slots, and worker processes check them in
//! place.
//!
//! ```sh
//! cargo run --release --example packet_pipeline            # 2 workers, 20000 packets
//! cargo run --release --example packet_pipeline -- 3 5000  # 3 workers, 5000 packets
//! ```
//!
//! A sender thread sends numbered packets to a UDP socket on loopback; the
//! reader thread reserves a slot (`Queue::reserve_until`), lets `recv` write
//! the datagram into it, and commits its length. Workers, separate
//! processes, take each packet in place (`Consumer::consume_until`), check
//! its checksum and release the slot when the guard drops. Nothing is
//! copied between the socket and the worker's check.
//!
//! UDP may drop datagrams when the reader falls behind (the kernel's receive
//! buffer is full); the example counts what the reader committed and checks
//! that the workers processed exactly that, each packet once, every checksum
//! right.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmq::{Queue, QueueConfig, RecvError, Target};

/// Largest datagram: an 8-byte sequence, a payload, a 4-byte checksum.
const MAX_PACKET: usize = 256;
const WAIT: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return worker(&args[1].parse()?);
    }
    let workers: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(2);
    let packets: u64 = args
        .get(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);

    let target: Target = format!("packets-{}", std::process::id()).parse()?;
    // Owned: the queue's name is removed when main returns, on error paths too.
    let queue = Queue::create_owned(&target, &QueueConfig::new(MAX_PACKET, 1024))?;
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args(["--worker", &target.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let to = socket.local_addr()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let out = UdpSocket::bind("127.0.0.1:0")?;
        for seq in 0..packets {
            out.send_to(&packet(seq), to)?;
            if seq % 64 == 63 {
                // Loopback takes datagrams faster than anyone reads them:
                // give the reader a moment now and then.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    });

    // The reader: every datagram lands in a reserved slot. Once the sender
    // is done, a quiet 200 ms ends the stream.
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut producer = queue.map(Queue::into_producer)?;
    let mut committed = 0u64;
    loop {
        let mut slot = producer.reserve_until(MAX_PACKET, Some(Instant::now() + WAIT))?;
        match socket.recv(&mut slot) {
            Ok(n) => {
                slot.commit(n)?;
                committed += 1;
            }
            Err(e) if is_timeout(&e) && sender.is_finished() => break, // the slot is cancelled on drop
            Err(e) if is_timeout(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    sender.join().expect("sender thread")?;
    producer.close(); // the workers drain what is left, then stop

    let (mut processed, mut bad) = (0u64, 0u64);
    for child in children.drain(..) {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>());
        let (Some(Ok(p)), Some(Ok(b))) = (fields.next(), fields.next()) else {
            return Err(format!("a worker said {text:?} ({})", out.status).into());
        };
        processed += p;
        bad += b;
    }
    println!(
        "sent {packets} packets; the reader committed {committed} into reserved slots ({} dropped by UDP); \
         {workers} workers processed {processed} in place, {bad} with a bad checksum",
        packets - committed
    );
    if processed != committed || bad != 0 {
        return Err("the workers did not process exactly what the reader committed".into());
    }
    Ok(())
}

/// Takes packets in place until the queue is closed and drained; prints
/// how many it processed and how many failed their checksum.
fn worker(target: &Target) -> Result<(), Box<dyn std::error::Error>> {
    let mut consumer = Queue::open(target)?.into_consumer()?;
    let (mut processed, mut bad) = (0u64, 0u64);
    loop {
        match consumer.consume_until(Some(Instant::now() + WAIT)) {
            // The slot is shared memory: `check` validates before it trusts.
            Ok(msg) => {
                bad += u64::from(!check(&msg));
                processed += 1;
            } // released here
            Err(RecvError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("{processed} {bad}");
    Ok(())
}

/// Packet `seq`: the sequence, 16 to 200 bytes derived from it, and a
/// checksum of both.
fn packet(seq: u64) -> Vec<u8> {
    let len = 16 + (seq % 185) as usize;
    let mut p = seq.to_le_bytes().to_vec();
    p.extend((0..len).map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8)));
    let sum = checksum(&p);
    p.extend(sum.to_le_bytes());
    p
}

fn check(p: &[u8]) -> bool {
    p.len() >= 12 && {
        let (body, sum) = p.split_at(p.len() - 4);
        checksum(body).to_le_bytes() == sum
    }
}

/// Fletcher-32 over the bytes.
fn checksum(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (0u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65535;
        b = (b + a) % 65535;
    }
    b << 16 | a
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
