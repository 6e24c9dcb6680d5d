//! HTTP request filters and rewrites, named after GoReplay's flags.
//!
//! A [`Filters`] holds an ordered list of [`Rule`]s (built with [`parse_rule`]). Intake
//! rules ([`intake`]: the client's address as a header, bodies decoded) change a request
//! as it comes in, before the middleware ([`Filters::intake`]); the others apply to every
//! message the middleware passed on ([`Filters::apply`]). For a request, filter rules
//! decide first and all must pass; then rewrite rules run in order, each seeing the
//! previous ones' result. A request
//! that is dropped has its id remembered so that its response is dropped too (ids are
//! unique per framer, so one bounded set serves all connections). Responses are otherwise
//! passed through untouched.
//!
//! Matching follows GoReplay where it is unambiguous: several `--http-allow-url` keep a
//! request matching any of them, several `--http-allow-method` likewise; limiters hash with
//! FNV-1a 32 mod 100 and let a request lacking the header/parameter through; only the first
//! matching `--http-rewrite-url` applies; several `--http-basic-auth-filter` must all
//! match. Deliberate differences: `--http-allow-header` drops a request lacking the header
//! (GoReplay lets it through), and so does `--http-basic-auth-filter` a request without
//! Basic credentials (GoReplay lets those through), methods compare case-insensitively, a
//! header rewrite applies to every header of that name, `--http-set-param` to every
//! occurrence of the parameter ([`query`]), and parameter values are percent-decoded
//! before hashing (see [`sample`]).
//!
//! Regexes are `regex::bytes::Regex` (header values need not be UTF-8, and GoReplay's Go
//! regexps also match bytes); replacement syntax (`$1`, `${name}`, `$$`) is the same as Go's.

pub mod intake;
mod parse;
pub mod query;
pub mod sample;
pub mod settings;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};

use base64::Engine;

pub use parse::parse_rule;
pub use regex::bytes::Regex;

use crate::envelope::MessageId;
use crate::http::edit::{EditError, HeadEdit};
use crate::http::{HttpMessage, Kind};

/// How many dropped request ids are remembered to drop their responses. A response comes
/// after its request on the same connection, so this only needs to cover the requests
/// in flight across all connections.
pub const DROPPED_IDS: usize = 65536;

/// One filter or rewrite, as given by one GoReplay flag.
#[derive(Clone, Debug)]
pub enum Rule {
    /// `--http-allow-url`: keep only requests whose target (path and query) matches.
    AllowUrl(Regex),
    /// `--http-disallow-url`: drop requests whose target matches.
    DisallowUrl(Regex),
    /// `--http-allow-method`: keep only these methods (case-insensitive).
    AllowMethod(Vec<String>),
    /// `--http-allow-header "Name: regex"`: keep only if a header of that name matches.
    AllowHeader(String, Regex),
    /// `--http-disallow-header "Name: regex"`: drop if a header of that name matches.
    DisallowHeader(String, Regex),
    /// `--http-set-header "Name: value"`: replace the first such header in place, else append.
    SetHeader(String, String),
    /// `--http-rewrite-url "regex:replacement"`.
    RewriteUrl(Regex, String),
    /// `--http-rewrite-header "Name: regex,replacement"`.
    RewriteHeader(String, Regex, String),
    /// `--http-header-limiter "Name: 10%"`: keep a consistent share by header value.
    HashHeader(String, u32),
    /// `--http-param-limiter "name: 10%"`: keep a consistent share by query parameter value.
    HashParam(String, u32),
    /// `--http-basic-auth-filter REGEX`: keep only requests whose decoded Basic
    /// credentials (`user:password`) match.
    BasicAuth(Regex),
    /// `--http-set-param "name=value"`: set a query parameter, appending it when missing.
    SetParam(String, String),
    /// `--http-realip-header NAME`: the client's IP as this header (an intake rule).
    RealIpHeader(String),
    /// `--http-prettify`: decode chunked and compressed request bodies (an intake rule).
    Prettify,
}

impl Rule {
    fn is_rewrite(&self) -> bool {
        matches!(
            self,
            Rule::SetHeader(..)
                | Rule::SetParam(..)
                | Rule::RewriteUrl(..)
                | Rule::RewriteHeader(..)
        )
    }

    /// Whether the rule applies as a request comes in, before the middleware.
    fn is_intake(&self) -> bool {
        matches!(self, Rule::RealIpHeader(..) | Rule::Prettify)
    }
}

/// What to do with a message.
///
/// The message is moved through by value, as the framer emits it; boxing it to shrink the
/// enum would add an allocation per message on the hot path for no benefit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Verdict {
    /// Forward this message (possibly rewritten).
    Keep(HttpMessage),
    Drop,
}

/// Requests dropped, by the kind of rule that dropped them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DroppedByRule {
    pub allow_url: u64,
    pub disallow_url: u64,
    pub allow_method: u64,
    pub allow_header: u64,
    pub disallow_header: u64,
    pub header_limiter: u64,
    pub param_limiter: u64,
    pub basic_auth: u64,
}

/// Counters of what the filters did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FilterStats {
    /// Requests kept (rewritten or not).
    pub passed: u64,
    pub dropped_by_rule: DroppedByRule,
    /// Kept requests whose bytes a rewrite changed.
    pub rewritten: u64,
    /// Responses dropped because their request was.
    pub dropped_responses: u64,
    /// Requests a limiter let through because they lacked its header or parameter.
    pub limiter_missing: u64,
    /// Requests kept unrewritten because the rewrite produced an unparsable head.
    pub rewrite_errors: u64,
    /// Requests whose body `--http-prettify` decoded.
    pub prettified: u64,
    /// Requests kept as they came because their body did not decode.
    pub prettify_errors: u64,
}

/// An ordered set of rules with its counters and the ids of dropped requests.
pub struct Filters {
    /// The intake rules, in order.
    intake: Vec<Rule>,
    /// The filter and rewrite rules, in order.
    rules: Vec<Rule>,
    stats: FilterStats,
    dropped: HashSet<MessageId>,
    dropped_order: VecDeque<MessageId>,
}

impl Filters {
    pub fn new(rules: Vec<Rule>) -> Self {
        let (intake, rules) = rules.into_iter().partition(Rule::is_intake);
        Filters {
            intake,
            rules,
            stats: FilterStats::default(),
            dropped: HashSet::new(),
            dropped_order: VecDeque::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.intake.is_empty()
    }

    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }

    /// Applies the intake rules to a request as it comes in (before the middleware);
    /// a response, or a request they cannot change, is returned as it is.
    pub fn intake(&mut self, msg: HttpMessage) -> HttpMessage {
        if self.intake.is_empty() || !matches!(msg.kind, Kind::Request { .. }) {
            return msg;
        }
        let mut msg = msg;
        for rule in &self.intake {
            match rule {
                Rule::RealIpHeader(name) => match intake::realip(&msg, name) {
                    Ok(Some(new)) => msg = new,
                    Ok(None) => {}
                    Err(_) => self.stats.rewrite_errors += 1,
                },
                Rule::Prettify => match intake::prettify(&msg) {
                    Ok(Some(new)) => {
                        self.stats.prettified += 1;
                        msg = new;
                    }
                    Ok(None) => {}
                    Err(_) => self.stats.prettify_errors += 1,
                },
                _ => {}
            }
        }
        msg
    }

    /// Filters, then rewrites, a request; drops the response of a dropped request; passes
    /// any other response unchanged.
    pub fn apply(&mut self, msg: HttpMessage) -> Verdict {
        if self.rules.is_empty() {
            return Verdict::Keep(msg);
        }
        let Kind::Request { method, target, .. } = &msg.kind else {
            if self.dropped.remove(&msg.id) {
                self.stats.dropped_responses += 1;
                return Verdict::Drop;
            }
            return Verdict::Keep(msg);
        };
        if let Some(counter) = self.check(method, target, &msg) {
            *counter += 1;
            self.remember_dropped(msg.id.clone());
            return Verdict::Drop;
        }
        self.stats.passed += 1;
        if !self.rules.iter().any(Rule::is_rewrite) {
            return Verdict::Keep(msg);
        }
        match self.rewrite(&msg) {
            Ok(Some(new)) => {
                self.stats.rewritten += 1;
                Verdict::Keep(new)
            }
            Ok(None) => Verdict::Keep(msg),
            Err(_) => {
                self.stats.rewrite_errors += 1;
                Verdict::Keep(msg)
            }
        }
    }

    /// Runs the filter rules; `Some(counter)` names the rule kind that drops the request.
    fn check(&mut self, method: &str, target: &str, msg: &HttpMessage) -> Option<&mut u64> {
        let mut url_allowed = None::<bool>;
        let mut method_allowed = None::<bool>;
        let mut missing = false;
        let mut dropped_by = None;
        for rule in &self.rules {
            match rule {
                // Allow rules of one kind form a group: any match keeps (GoReplay's OR).
                Rule::AllowUrl(re) => {
                    *url_allowed.get_or_insert(false) |= re.is_match(target.as_bytes());
                }
                Rule::AllowMethod(ms) => {
                    *method_allowed.get_or_insert(false) |=
                        ms.iter().any(|m| m.eq_ignore_ascii_case(method));
                }
                Rule::DisallowUrl(re) if re.is_match(target.as_bytes()) => {
                    dropped_by = Some(DropBy::DisallowUrl);
                }
                Rule::AllowHeader(name, re) if !any_header(msg, name, re) => {
                    dropped_by = Some(DropBy::AllowHeader);
                }
                Rule::DisallowHeader(name, re) if any_header(msg, name, re) => {
                    dropped_by = Some(DropBy::DisallowHeader);
                }
                Rule::HashHeader(name, pct) => match msg.header(name).map(trim) {
                    // GoReplay also treats an empty value as absent.
                    Some(v) if !v.is_empty() => {
                        if !sample::keep(v, *pct) {
                            dropped_by = Some(DropBy::HeaderLimiter);
                        }
                    }
                    _ => missing = true,
                },
                Rule::HashParam(name, pct) => match sample::query_param(target, name) {
                    Some(v) => {
                        if !sample::keep(&v, *pct) {
                            dropped_by = Some(DropBy::ParamLimiter);
                        }
                    }
                    None => missing = true,
                },
                Rule::BasicAuth(re) if !basic_auth(msg).is_some_and(|c| re.is_match(&c)) => {
                    dropped_by = Some(DropBy::BasicAuth);
                }
                _ => {}
            }
            if dropped_by.is_some() {
                break;
            }
        }
        if dropped_by.is_none() {
            if url_allowed == Some(false) {
                dropped_by = Some(DropBy::AllowUrl);
            } else if method_allowed == Some(false) {
                dropped_by = Some(DropBy::AllowMethod);
            } else if missing {
                self.stats.limiter_missing += 1;
            }
        }
        let d = &mut self.stats.dropped_by_rule;
        dropped_by.map(|by| match by {
            DropBy::AllowUrl => &mut d.allow_url,
            DropBy::DisallowUrl => &mut d.disallow_url,
            DropBy::AllowMethod => &mut d.allow_method,
            DropBy::AllowHeader => &mut d.allow_header,
            DropBy::DisallowHeader => &mut d.disallow_header,
            DropBy::HeaderLimiter => &mut d.header_limiter,
            DropBy::ParamLimiter => &mut d.param_limiter,
            DropBy::BasicAuth => &mut d.basic_auth,
        })
    }

    /// Runs the rewrite rules; `Ok(None)` when the message is unchanged.
    fn rewrite(&self, msg: &HttpMessage) -> Result<Option<HttpMessage>, EditError> {
        let mut head = HeadEdit::new(&msg.raw, msg.body_offset)?;
        let mut url_rewritten = false;
        for rule in &self.rules {
            match rule {
                Rule::SetHeader(name, value) => head.set_header(name, value.as_bytes()),
                Rule::SetParam(name, value) => {
                    let new = query::set_param(head.target(), name, value);
                    head.set_target(new);
                }
                // Only the first matching URL rewrite applies, as in GoReplay.
                Rule::RewriteUrl(re, to) if !url_rewritten => {
                    let target = head.target();
                    if re.is_match(target.as_bytes()) {
                        let new = re.replace_all(target.as_bytes(), to.as_bytes());
                        // Captures come from a valid target and the replacement was
                        // checked, so this is ASCII; a failure is left to the re-parse.
                        let new = String::from_utf8_lossy(&new).into_owned();
                        head.set_target(new);
                        url_rewritten = true;
                    }
                }
                Rule::RewriteHeader(name, re, to) => {
                    for i in head.find(name) {
                        let v = head.value(i);
                        if re.is_match(v) {
                            let new = re.replace_all(v, to.as_bytes()).into_owned();
                            head.set_value(i, new);
                        }
                    }
                }
                _ => {}
            }
        }
        head.finish(msg)
    }

    fn remember_dropped(&mut self, id: MessageId) {
        if self.dropped.insert(id.clone()) {
            self.dropped_order.push_back(id);
        }
        // Ids whose responses never came (connection closed, pipelining cut) age out here;
        // ids already removed by their response are skipped over.
        while self.dropped_order.len() > DROPPED_IDS {
            if let Some(old) = self.dropped_order.pop_front() {
                self.dropped.remove(&old);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum DropBy {
    AllowUrl,
    DisallowUrl,
    AllowMethod,
    AllowHeader,
    DisallowHeader,
    HeaderLimiter,
    ParamLimiter,
    BasicAuth,
}

/// The decoded credentials (`user:password`) of the first `Authorization` header, when it
/// is Basic (the scheme compares case-insensitively, as RFC 9110 §11.1 says; padding may be
/// left out) and decodes.
fn basic_auth(msg: &HttpMessage) -> Option<Vec<u8>> {
    const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let v = trim(msg.header("authorization")?);
    let (scheme, creds) = v.split_at(v.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    B64.decode(trim(creds)).ok()
}

/// Whether any header named `name` (case-insensitive) has a value matching `re`.
fn any_header(msg: &HttpMessage, name: &str, re: &Regex) -> bool {
    msg.headers()
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case(name) && re.is_match(trim(v)))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}
