//! Hex encoding of middleware lines, by lookup table: every message crosses the pipe
//! twice at twice its size, so per-byte formatting would dominate the cost.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The two lowercase hex digits of every byte value.
const PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
        i += 1;
    }
    t
};

/// Marks a byte that is not a hex digit in [`NIBBLES`].
const INVALID: u8 = 0xff;

/// The value of every hex digit, either case (Go's `hex.DecodeString`, which GoReplay
/// middleware use, writes lowercase but accepts both), [`INVALID`] for anything else.
const NIBBLES: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Appends `bytes` as lowercase hex to `out`.
pub(crate) fn encode(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    // Sized up front so the loop is plain stores, no capacity checks.
    out.resize(start + 2 * bytes.len(), 0);
    for (dst, &b) in out[start..].chunks_exact_mut(2).zip(bytes) {
        dst.copy_from_slice(&PAIRS[usize::from(b)]);
    }
}

/// Decodes hex into `out` (cleared first). `false` for an odd length or a non-hex byte.
pub(crate) fn decode(hex: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    if !hex.len().is_multiple_of(2) {
        return false;
    }
    out.reserve(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        let hi = NIBBLES[usize::from(pair[0])];
        let lo = NIBBLES[usize::from(pair[1])];
        if hi == INVALID || lo == INVALID {
            return false;
        }
        out.push(hi << 4 | lo);
    }
    true
}
