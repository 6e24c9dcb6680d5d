//! Consistent sampling for `--http-header-limiter` and `--http-param-limiter`.
//!
//! The decision is a pure function of the value: FNV-1a 32-bit of the value's bytes,
//! modulo 100, compared with the percentage. This is exactly GoReplay's computation
//! (`fnv.New32a()`, `Sum32() % 100 >= percent` drops), so a session is kept or dropped the
//! same way across restarts, hosts, and a mixed fleet of gor and GoReplay instances.
//! Query parameters are compared and hashed after percent-decoding (see [`query_param`]).

/// FNV-1a, 32-bit (offset basis 0x811c9dc5, prime 0x01000193).
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Whether a value falls inside the kept `percent` (0..=100) of the value space.
pub fn keep(value: &[u8], percent: u32) -> bool {
    fnv1a32(value) % 100 < percent
}

/// The percent-decoded value of the first query parameter named `name` in a request target
/// (origin- or absolute-form). `Some(empty)` for `?name` or `?name=`; `None` when absent.
///
/// Names and values are decoded (`%XX` and `+` as space, as in form encoding) before use,
/// so `a%40b`, `a@b` and differently-cased escapes of one value sample identically: a
/// client library's choice of escaping must not split one session across decisions.
/// GoReplay hashes the raw bytes instead; the two agree whenever the value needs no escaping.
pub fn query_param(target: &str, name: &str) -> Option<Vec<u8>> {
    let query = target.split_once('?')?.1;
    // A fragment is never sent on the wire, but if a client did send one it is not query.
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k.as_bytes()) == name.as_bytes()).then(|| decode(v.as_bytes()))
        })
}

/// Decodes `%XX` escapes and `+`; malformed escapes are kept literally rather than rejected,
/// because the decision must exist for any bytes a client sends.
pub fn decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16).ok()
                });
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}
