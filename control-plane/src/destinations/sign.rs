//! The signature of a delivered result: HMAC-SHA256 (RFC 2104) over
//! `"{timestamp}.{body}"`, sent as `X-Gantry-Signature: sha256=<hex>` with the
//! timestamp in `X-Gantry-Timestamp` (Unix seconds), so a receiver can refuse replays.

use sha2::{Digest, Sha256};

/// SHA-256's block size.
const BLOCK: usize = 64;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-gantry-signature";
/// The header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "x-gantry-timestamp";
/// The header carrying the delivery's id (the same on every attempt: receivers may
/// de-duplicate on it).
pub const DELIVERY_HEADER: &str = "x-gantry-delivery";

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The `X-Gantry-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn signature(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    format!("sha256={}", hex::encode(hmac_sha256(key, &message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4231() {
        // Test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than a block.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signature_covers_the_timestamp() {
        let one = signature(b"k", 1, b"{}");
        assert!(one.starts_with("sha256="));
        assert_ne!(one, signature(b"k", 2, b"{}"));
        assert_eq!(one, signature(b"k", 1, b"{}"));
    }
}
