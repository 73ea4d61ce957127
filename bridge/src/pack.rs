//! Packed NATS messages: several messages of a log in one NATS message
//! (an out route's `pack = true`, core mode only).
//!
//! NATS charges per message: on the development machine nats-server spent
//! about 1.1 us of CPU on each 64-byte message carrying the route's header,
//! which capped a route near what a bare client moves. A pack carries up to
//! a read batch of consecutive messages of one log: its `Nats-Msg-Id` names
//! the first one's sequence number, `Shmq-Pack: n` says how many follow,
//! and the payload is `n` frames, each a 4-byte little-endian length and
//! that many bytes. An in route unpacks any message with that header, in
//! whichever mode, and then treats each part as if it had come alone
//! (sequence numbers `first`, `first + 1`, ...): deduplication, gap counting
//! and the state file see no difference.
//!
//! Other NATS subscribers of a packed subject see the frames: packing is
//! for routes whose readers are shmq bridges. JetStream deduplicates whole
//! NATS messages by `Nats-Msg-Id`, and a pack re-sent after a failure need
//! not hold the same messages as the first one, so JetStream routes do not
//! pack. Only logs pack: a queue's sequence numbers are not consecutive.

/// The header that marks a pack and gives its number of messages.
pub const PACK_HEADER: &str = "Shmq-Pack";

/// Most messages in one pack (an out route packs at most one read batch).
pub const MAX_PACK: usize = 4096;

/// Bytes of one frame's length prefix.
const LEN: usize = 4;

/// The payload size of a pack of `payloads`.
pub fn body_len<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> usize {
    payloads.into_iter().map(|p| LEN + p.len()).sum()
}

/// Appends the frames of `payloads` to `buf`.
pub fn put_body<'a>(buf: &mut Vec<u8>, payloads: impl IntoIterator<Item = &'a [u8]>) {
    for p in payloads {
        // A message longer than u32::MAX bytes exceeds any server's
        // max_payload, which the out route checks first.
        buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
        buf.extend_from_slice(p);
    }
}

/// The pack's size from its header value (`None`: not a number in
/// `1..=MAX_PACK`).
pub fn count(value: &str) -> Option<usize> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PACK).contains(n))
}

/// The byte ranges of the `n` messages of a pack's payload, or why it is
/// malformed (it came over the network: every length is checked against
/// what is left, and nothing may follow the last frame).
pub fn split(body: &[u8], n: usize) -> Result<Vec<std::ops::Range<usize>>, String> {
    let mut parts = Vec::with_capacity(n.min(MAX_PACK));
    let mut at = 0;
    for i in 0..n {
        let Some(len) = body.get(at..at + LEN) else {
            return Err(format!(
                "frame {i} of {n}: {} bytes left for its length",
                body.len() - at
            ));
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        at += LEN;
        if len > body.len() - at {
            return Err(format!(
                "frame {i} of {n}: length {len} with {} bytes left",
                body.len() - at
            ));
        }
        parts.push(at..at + len);
        at += len;
    }
    if at != body.len() {
        return Err(format!(
            "{} bytes after the last of {n} frames",
            body.len() - at
        ));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_splits_into_what_was_put() {
        let msgs: [&[u8]; 4] = [b"a", b"", b"hello", &[0u8; 300]];
        let mut buf = Vec::new();
        put_body(&mut buf, msgs);
        assert_eq!(buf.len(), body_len(msgs));
        let parts = split(&buf, 4).unwrap();
        let got: Vec<&[u8]> = parts.iter().map(|r| &buf[r.clone()]).collect();
        assert_eq!(got, msgs);
    }

    #[test]
    fn a_malformed_pack_is_an_error_at_every_cut() {
        let mut buf = Vec::new();
        put_body(&mut buf, [&b"abc"[..], b"defgh"]);
        // Every truncation, and a count that does not match.
        for cut in 0..buf.len() {
            assert!(split(&buf[..cut], 2).is_err(), "cut at {cut}");
        }
        assert!(split(&buf, 1).is_err(), "bytes after the last frame");
        assert!(split(&buf, 3).is_err(), "a frame missing");
        // A length past the end.
        let mut long = buf.clone();
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(split(&long, 2).is_err());
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(count("3"), Some(3));
        assert_eq!(count(" 4096 "), Some(MAX_PACK));
        for bad in ["0", "4097", "-1", "", "x", "99999999999999999999999"] {
            assert_eq!(count(bad), None, "{bad:?}");
        }
    }
}
