//! `--http-set-param`: setting a query parameter in a request target.
//!
//! GoReplay overwrites the parameter when the target has it and appends `name=value`
//! otherwise (`?` or `&` as needed). Names are compared after percent-decoding, as the
//! limiters compare them ([`super::sample::query_param`]), and every occurrence of the
//! name gets the value: with `?a=1&a=2`, a server that reads the last one would otherwise
//! still see the old value (GoReplay replaces the first it finds only).

use super::sample::decode;

/// `target` with the query parameter `name` set to `value` (both as given, already
/// escaped where needed); a fragment, if a client sent one, stays last.
pub fn set_param(target: &str, name: &str, value: &str) -> String {
    let (before_frag, frag) = match target.find('#') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    let (path, query) = match before_frag.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_frag, None),
    };
    let mut found = false;
    let mut pairs: Vec<String> = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !pair.is_empty() && decode(key.as_bytes()) == name.as_bytes() {
            found = true;
            pairs.push(format!("{key}={value}"));
        } else {
            pairs.push(pair.to_string());
        }
    }
    if !found {
        // `/p?` and `/p?a=1&` end with an empty pair: the new one takes its place.
        if pairs.last().is_some_and(|p| p.is_empty()) {
            pairs.pop();
        }
        pairs.push(format!("{name}={value}"));
    }
    format!("{path}?{}{frag}", pairs.join("&"))
}
