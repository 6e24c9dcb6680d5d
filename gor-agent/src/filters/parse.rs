//! Parsing GoReplay-style flag values into [`Rule`]s.
//!
//! Syntax follows GoReplay: `Name: regex` for header filters, `regex:replacement` for URL
//! rewrites (split at the first colon, so the regex cannot contain one, as in GoReplay),
//! `Name: regex,replacement` for header rewrites (split at the first comma), `Name: 10%`
//! for limiters, `name=value` for `--http-set-param` (split at the first `=`, both sides
//! trimmed, as in GoReplay), a header name alone for `--http-realip-header`. Values that would make a rewritten message invalid or re-frame it are
//! refused here rather than at run time: line breaks in set values, whitespace in a URL
//! replacement, and rules touching `Content-Length` or `Transfer-Encoding` (the body is
//! never rewritten, so changing its framing would corrupt the stream).

use super::{Regex, Rule};
use crate::http::token::{is_tchar, is_token};
use crate::http::validate::is_field_text;

/// Parses one flag (`flag` is the GoReplay name without dashes) and its value.
pub fn parse_rule(flag: &str, value: &str) -> Result<Rule, String> {
    let err = |what: String| format!("--{flag} {value:?}: {what}");
    match flag {
        "http-allow-url" => Ok(Rule::AllowUrl(regex(value).map_err(err)?)),
        "http-disallow-url" => Ok(Rule::DisallowUrl(regex(value).map_err(err)?)),
        "http-allow-method" => {
            let m = value.trim();
            if !is_token(m.as_bytes()) {
                return Err(err("expected an HTTP method such as GET".into()));
            }
            Ok(Rule::AllowMethod(vec![m.to_owned()]))
        }
        "http-allow-header" | "http-disallow-header" => {
            let (name, re) = name_value(value, true).map_err(err)?;
            let re = regex(re).map_err(err)?;
            Ok(if flag == "http-allow-header" {
                Rule::AllowHeader(name, re)
            } else {
                Rule::DisallowHeader(name, re)
            })
        }
        "http-set-header" => {
            let (name, v) = name_value(value, true).map_err(err)?;
            not_framing(&name).map_err(err)?;
            field_value(v).map_err(err)?;
            Ok(Rule::SetHeader(name, v.to_owned()))
        }
        "http-rewrite-url" => {
            let (re, to) = value
                .split_once(':')
                .ok_or_else(|| err("expected regex:replacement (e.g. /v1/(.*):/v2/$1)".into()))?;
            if to.is_empty() || to.bytes().any(|b| b.is_ascii_whitespace() || b < 0x20) {
                return Err(err(
                    "the replacement must be non-empty, without whitespace or control bytes".into(),
                ));
            }
            Ok(Rule::RewriteUrl(regex(re).map_err(err)?, to.to_owned()))
        }
        "http-rewrite-header" => {
            let (name, rest) = name_value(value, true).map_err(err)?;
            not_framing(&name).map_err(err)?;
            let (re, to) = rest.split_once(',').ok_or_else(|| {
                err("expected Name: regex,replacement (e.g. Host: (.*)\\.prod,$1.staging)".into())
            })?;
            field_value(to).map_err(err)?;
            Ok(Rule::RewriteHeader(
                name,
                regex(re).map_err(err)?,
                to.to_owned(),
            ))
        }
        "http-header-limiter" | "http-param-limiter" => {
            let (name, pct) = name_value(value, flag == "http-header-limiter").map_err(err)?;
            let pct = percent(pct).map_err(err)?;
            Ok(if flag == "http-header-limiter" {
                Rule::HashHeader(name, pct)
            } else {
                Rule::HashParam(name, pct)
            })
        }
        "http-basic-auth-filter" => Ok(Rule::BasicAuth(regex(value).map_err(err)?)),
        "http-set-param" => {
            let (name, v) = value
                .split_once('=')
                .ok_or_else(|| err("expected name=value (e.g. api_key=1)".into()))?;
            let (name, v) = (name.trim(), v.trim());
            // Inserted as given: a byte that ends or splits a parameter, or is not allowed
            // in a request target, would change what else the target says.
            let bad = |s: &str, eq: bool| {
                s.bytes()
                    .any(|b| !b.is_ascii_graphic() || matches!(b, b'&' | b'#') || (eq && b == b'='))
            };
            if name.is_empty() || bad(name, true) || bad(v, false) {
                return Err(err(
                    "the name must be non-empty; name and value must be visible ASCII \
                     without `&` or `#` (percent-encode them, e.g. %26)"
                        .into(),
                ));
            }
            Ok(Rule::SetParam(name.to_owned(), v.to_owned()))
        }
        "http-realip-header" => {
            let name = value.trim();
            if !is_token(name.as_bytes()) {
                return Err(err("expected a header name such as X-Real-IP".into()));
            }
            not_framing(name).map_err(err)?;
            Ok(Rule::RealIpHeader(name.to_owned()))
        }
        _ => Err(format!("unknown filter flag --{flag}")),
    }
}

fn regex(re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| format!("invalid regex {re:?}: {e}"))
}

/// Splits `Name: rest` at the first colon; `rest` is trimmed. A header name must be a
/// token; a query parameter name (`token` false) may be anything visible (`user[id]`).
fn name_value(value: &str, token: bool) -> Result<(String, &str), String> {
    let (name, rest) = value
        .split_once(':')
        .ok_or_else(|| "expected \"Name: value\" (colon-separated)".to_owned())?;
    let name = name.trim();
    let valid = |b: u8| {
        if token {
            is_tchar(b)
        } else {
            b.is_ascii_graphic()
        }
    };
    if name.is_empty() || !name.bytes().all(valid) {
        return Err(format!("invalid header or parameter name {name:?}"));
    }
    Ok((name.to_owned(), rest.trim()))
}

fn not_framing(name: &str) -> Result<(), String> {
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(format!(
            "{name} frames the body, which is never rewritten; refusing to change it"
        ));
    }
    Ok(())
}

/// A header value must not hold line breaks (header injection) or other control bytes: the
/// edited head is re-parsed by the framer's parser, which would refuse them at run time.
fn field_value(v: &str) -> Result<(), String> {
    if !is_field_text(v.as_bytes()) {
        return Err("the value must not contain line breaks or control bytes".into());
    }
    Ok(())
}

/// `10%` or `10`, from 0 to 100.
fn percent(s: &str) -> Result<u32, String> {
    let n = s.strip_suffix('%').unwrap_or(s).trim();
    match n.parse::<u32>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("expected a percentage from 0% to 100%, got {s:?}")),
    }
}
