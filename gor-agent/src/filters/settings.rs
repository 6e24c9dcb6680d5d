//! The filters' settings: GoReplay's `--http-*` flags, each of which may be given
//! several times (its environment twin takes several values separated by newlines),
//! validated into the [`Rule`]s that [`Filters`](super::Filters) applies in order.

use clap::Args;

use super::{parse_rule, Rule};
use crate::settings::{long_name, Problems};

/// HTTP filters and rewrites, named after GoReplay's flags. Each flag may be given
/// several times; its environment twin takes several values separated by newlines.
/// They apply to requests after the middleware, before any output (a filtered request's
/// response is dropped too); `--http-realip-header` and `--http-prettify` apply before
/// the middleware.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Keep only requests whose target (path and query) matches one of these regexes.
    #[arg(
        long,
        env = "GOR_HTTP_ALLOW_URL",
        value_name = "REGEX",
        value_delimiter = '\n'
    )]
    pub http_allow_url: Vec<String>,
    /// Drop requests whose target matches this regex.
    #[arg(
        long,
        env = "GOR_HTTP_DISALLOW_URL",
        value_name = "REGEX",
        value_delimiter = '\n'
    )]
    pub http_disallow_url: Vec<String>,
    /// Keep only requests with one of these methods.
    #[arg(
        long,
        env = "GOR_HTTP_ALLOW_METHOD",
        value_name = "METHOD",
        value_delimiter = '\n'
    )]
    pub http_allow_method: Vec<String>,
    /// Keep only requests with a header matching `Name: regex`.
    #[arg(
        long,
        env = "GOR_HTTP_ALLOW_HEADER",
        value_name = "NAME: REGEX",
        value_delimiter = '\n'
    )]
    pub http_allow_header: Vec<String>,
    /// Drop requests with a header matching `Name: regex`.
    #[arg(
        long,
        env = "GOR_HTTP_DISALLOW_HEADER",
        value_name = "NAME: REGEX",
        value_delimiter = '\n'
    )]
    pub http_disallow_header: Vec<String>,
    /// Keep a consistent share of requests by hashing a header value: `Name: 10%`.
    #[arg(
        long,
        env = "GOR_HTTP_HEADER_LIMITER",
        value_name = "NAME: N%",
        value_delimiter = '\n'
    )]
    pub http_header_limiter: Vec<String>,
    /// Keep a consistent share of requests by hashing a query parameter: `name: 10%`.
    #[arg(
        long,
        env = "GOR_HTTP_PARAM_LIMITER",
        value_name = "NAME: N%",
        value_delimiter = '\n'
    )]
    pub http_param_limiter: Vec<String>,
    /// Keep only requests whose decoded Basic credentials (`user:password`) match this
    /// regex; a request without Basic credentials is dropped.
    #[arg(
        long,
        env = "GOR_HTTP_BASIC_AUTH_FILTER",
        value_name = "REGEX",
        value_delimiter = '\n'
    )]
    pub http_basic_auth_filter: Vec<String>,
    /// Set a header on every request (all outputs): `Name: value`.
    #[arg(
        long,
        env = "GOR_HTTP_SET_HEADER",
        value_name = "NAME: VALUE",
        value_delimiter = '\n'
    )]
    pub http_set_header: Vec<String>,
    /// Set a query parameter on every request, appending it when missing: `name=value`.
    #[arg(
        long,
        env = "GOR_HTTP_SET_PARAM",
        value_name = "NAME=VALUE",
        value_delimiter = '\n'
    )]
    pub http_set_param: Vec<String>,
    /// Rewrite the request target: `regex:replacement` (`$1` for groups).
    #[arg(
        long,
        env = "GOR_HTTP_REWRITE_URL",
        value_name = "REGEX:REPLACEMENT",
        value_delimiter = '\n'
    )]
    pub http_rewrite_url: Vec<String>,
    /// Rewrite a header's value: `Name: regex,replacement`.
    #[arg(
        long,
        env = "GOR_HTTP_REWRITE_HEADER",
        value_name = "NAME: REGEX,REPLACEMENT",
        value_delimiter = '\n'
    )]
    pub http_rewrite_header: Vec<String>,
    /// Add the client's IP address as this header to every captured request (before the
    /// middleware), e.g. `X-Real-IP`.
    #[arg(long, env = "GOR_HTTP_REALIP_HEADER", value_name = "NAME")]
    pub http_realip_header: Option<String>,
    /// Decode chunked and compressed (gzip, deflate, br) request bodies before the
    /// middleware and the outputs, with `Content-Length` set to the decoded length.
    #[arg(
        long,
        env = "GOR_HTTP_PRETTIFY",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value = "false"
    )]
    pub http_prettify: bool,
}

impl FilterArgs {
    pub fn validate(&self, p: &mut Problems) -> Option<Vec<Rule>> {
        // By arg id: each flag's name (which says what kind of rule its values are) and
        // its environment name are read from clap, as declared above.
        let realip: Vec<String> = self.http_realip_header.iter().cloned().collect();
        let flags: [(&'static str, &Vec<String>); 13] = [
            ("http_realip_header", &realip),
            ("http_allow_url", &self.http_allow_url),
            ("http_disallow_url", &self.http_disallow_url),
            ("http_allow_method", &self.http_allow_method),
            ("http_allow_header", &self.http_allow_header),
            ("http_disallow_header", &self.http_disallow_header),
            ("http_header_limiter", &self.http_header_limiter),
            ("http_param_limiter", &self.http_param_limiter),
            ("http_basic_auth_filter", &self.http_basic_auth_filter),
            ("http_set_header", &self.http_set_header),
            ("http_set_param", &self.http_set_param),
            ("http_rewrite_url", &self.http_rewrite_url),
            ("http_rewrite_header", &self.http_rewrite_header),
        ];
        let mut c = p.of::<Self>();
        let mut rules = Vec::new();
        let mut ok = true;
        for (id, values) in flags {
            let flag = long_name::<Self>(id);
            for v in values.iter().filter(|v| !v.trim().is_empty()) {
                match c.field(id, v, parse_rule(flag, v)) {
                    Some(rule) => rules.push(rule),
                    None => ok = false,
                }
            }
        }
        if self.http_prettify {
            rules.push(Rule::Prettify);
        }
        ok.then_some(rules)
    }
}
