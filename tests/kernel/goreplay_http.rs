//! GoReplay's documented command lines, run as they are (addresses and ports changed to
//! loopback ones): production and staging are recording servers on 127.0.0.1, the agent
//! is started with the line's words, split as a shell splits them (`--input-raw
//! 127.0.0.1:PORT --output-http http://127.0.0.1:PORT ...`), a client sends requests to
//! production on one keep-alive connection, and each test asserts what GoReplay's
//! documentation says staging gets.
//!
//! The last request each test sends is one the command line keeps: messages of one
//! connection are mirrored in order, so once staging has it, every earlier request that
//! was going to reach staging has, and what staging recorded is all it will get.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use gor_tests::{
    agent::{temp_dir, Agent},
    staging::Staging,
    traffic::{listen, Raw},
};

/// What staging received when the agent ran GoReplay's command line `line` (split as a
/// shell splits it, the program's name first; `{prod}` and `{staging}` stand for the two
/// servers' loopback addresses) and the client sent `requests`: each request's bytes as
/// text, once `expect` of them arrived.
fn mirrored(name: &str, line: &str, requests: &[String], expect: usize) -> Vec<String> {
    let production = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let (prod, stag) = (production.addr.to_string(), staging.addr.to_string());
    let args: Vec<String> = shell_words(line)
        .into_iter()
        .skip(1)
        .map(|a| a.replace("{prod}", &prod).replace("{staging}", &stag))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let agent = Agent::start_args(name, &args, &[]);
    let mut client = Raw::connect(production.addr);
    for r in requests {
        client.send(r.as_bytes());
    }
    staging.wait_for(expect, Duration::from_secs(20));
    agent.stop();
    assert_eq!(
        production.received().len(),
        requests.len(),
        "production got every request"
    );
    staging
        .received()
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect()
}

/// The words of a command line as a POSIX shell splits them: blanks separate, `'...'` is
/// literal, `"..."` keeps blanks (a backslash escapes `"`, `\`, `$` in it), and outside
/// quotes a backslash keeps the next character as it is.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\' | '$')) => w.push(e),
                            Some(e) => w.extend(['\\', e]),
                            None => w.push('\\'),
                        },
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

fn get(path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: prod.example\r\n{headers}\r\n")
}

/// The request targets, in the order staging received them.
fn targets(got: &[String]) -> Vec<&str> {
    got.iter()
        .map(|r| r.split(' ').nth(1).expect("a request line"))
        .collect()
}

/// The value of the first header `name` of a request.
fn header<'a>(req: &'a str, name: &str) -> Option<&'a str> {
    let head = req.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(req: &str) -> &str {
    req.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

// docs/Request-filtering.md, "Allow url regexp":
// `./goreplay --input-raw :8080 --output-http staging.com --http-allow-url /api`
// ("only forward requests being sent to the /api endpoint").
#[test]
fn goreplay_allow_url_forwards_only_api_requests() {
    let reqs = [
        get("/api/users", ""),
        get("/static/app.js", ""),
        get("/v2/api/orders?id=1", ""),
        get("/health", ""),
        get("/api/orders", ""),
    ];
    let got = mirrored(
        "gr-allow-url",
        "./goreplay --input-raw {prod} --output-http {staging} --http-allow-url /api",
        &reqs,
        3,
    );
    assert_eq!(
        targets(&got),
        ["/api/users", "/v2/api/orders?id=1", "/api/orders"]
    );
}

// docs/Request-filtering.md, "Disallow url regexp":
// `./goreplay --input-raw :8080 --output-http staging.com --http-disallow-url /api`
// ("only forward requests NOT being sent to the /api... endpoint").
#[test]
fn goreplay_disallow_url_forwards_everything_but_api_requests() {
    let reqs = [
        get("/api/users", ""),
        get("/static/app.js", ""),
        get("/api/orders", ""),
        get("/health", ""),
    ];
    let got = mirrored(
        "gr-disallow-url",
        "./goreplay --input-raw {prod} --output-http {staging} --http-disallow-url /api",
        &reqs,
        2,
    );
    assert_eq!(targets(&got), ["/static/app.js", "/health"]);
}

// docs/Request-filtering.md, "Filter based on regexp of header":
// `./goreplay --input-raw :8080 --output-http staging.com --http-allow-header api-version:^1\.0\d`
// ("only forward requests with an api version of 1.0x"; quoted here, or the shell would
// pass `^1.0d`) and
// `./goreplay --input-raw :8080 --output-http staging.com --http-disallow-header "User-Agent: Replayed by Gor"`
// ("only forward requests NOT containing User-Agent header value "Replayed by Gor"").
#[test]
fn goreplay_header_filters_forward_by_header_value() {
    let reqs = [
        get("/a", "api-version: 1.01\r\n"),
        get("/b", "api-version: 2.0\r\n"),
        // No api-version: gor drops it (GoReplay 1.3 lets it through; see the README).
        get("/c", ""),
        get("/d", "API-Version: 1.09\r\n"),
    ];
    let got = mirrored(
        "gr-allow-header",
        r"./goreplay --input-raw {prod} --output-http {staging} --http-allow-header 'api-version:^1\.0\d'",
        &reqs,
        2,
    );
    assert_eq!(targets(&got), ["/a", "/d"]);

    let reqs = [
        get("/a", "User-Agent: Replayed by Gor\r\n"),
        get("/b", "User-Agent: curl/8.5\r\n"),
        get("/c", "User-Agent: Replayed by Gor\r\n"),
        get("/d", ""),
    ];
    let got = mirrored(
        "gr-disallow-header",
        r#"./goreplay --input-raw {prod} --output-http {staging} --http-disallow-header "User-Agent: Replayed by Gor""#,
        &reqs,
        2,
    );
    assert_eq!(targets(&got), ["/b", "/d"]);
}

// docs/Request-filtering.md, "Filter based on HTTP method":
// `./goreplay --input-raw :80 --output-http "http://staging.server" --http-allow-method GET --http-allow-method OPTIONS`
// ("to strip non-nullipotent requests").
#[test]
fn goreplay_allow_method_strips_non_nullipotent_requests() {
    let reqs = [
        get("/a", ""),
        "POST /b HTTP/1.1\r\nHost: prod.example\r\nContent-Length: 2\r\n\r\nhi".to_string(),
        "OPTIONS /c HTTP/1.1\r\nHost: prod.example\r\n\r\n".to_string(),
        "DELETE /d HTTP/1.1\r\nHost: prod.example\r\n\r\n".to_string(),
        "PUT /e HTTP/1.1\r\nHost: prod.example\r\nContent-Length: 0\r\n\r\n".to_string(),
        get("/f", ""),
    ];
    let got = mirrored(
        "gr-allow-method",
        r#"./goreplay --input-raw {prod} --output-http "http://{staging}" --http-allow-method GET --http-allow-method OPTIONS"#,
        &reqs,
        3,
    );
    assert_eq!(targets(&got), ["/a", "/c", "/f"]);
    assert!(got[1].starts_with("OPTIONS /c "), "{got:?}");
}

// docs/Request-rewriting.md, "Rewrite URL based on a mapping":
// `./goreplay --input-raw :8080 --output-http staging.com --http-rewrite-url /v1/user/([^\\/]+)/ping:/v2/user/$1/ping`
// ("Rewrites all `/v1/user/<user_id>/ping` requests to `/v2/user/<user_id>/ping`"; the
// shell makes `\\` one backslash).
#[test]
fn goreplay_rewrite_url_maps_v1_pings_to_v2() {
    let reqs = [
        get("/v1/user/42/ping", ""),
        get("/v1/user/42/profile", ""),
        get("/v1/user/ada/ping?x=1", ""),
    ];
    let got = mirrored(
        "gr-rewrite-url",
        r"./goreplay --input-raw {prod} --output-http {staging} --http-rewrite-url /v1/user/([^\\/]+)/ping:/v2/user/$1/ping",
        &reqs,
        3,
    );
    assert_eq!(
        targets(&got),
        [
            "/v2/user/42/ping",
            "/v1/user/42/profile",
            "/v2/user/ada/ping?x=1"
        ]
    );
}

// docs/Request-rewriting.md, "Set URL param":
// `./goreplay --input-raw :8080 --output-http staging.com --http-set-param api_key=1`
// ("Set request url param, if param already exists it will be overwritten").
#[test]
fn goreplay_set_param_overwrites_or_adds_the_parameter() {
    let reqs = [
        get("/search?q=shoes&api_key=secret", ""),
        get("/search?q=hats", ""),
        get("/home", ""),
    ];
    let got = mirrored(
        "gr-set-param",
        "./goreplay --input-raw {prod} --output-http {staging} --http-set-param api_key=1",
        &reqs,
        3,
    );
    assert_eq!(
        targets(&got),
        [
            "/search?q=shoes&api_key=1",
            "/search?q=hats&api_key=1",
            "/home?api_key=1"
        ]
    );
}

// docs/Request-rewriting.md, "Set Header" (GoReplay 1.3 spells the flag
// `--http-set-header`; the page's `--http-header` is an older name 1.3 no longer has):
// `./goreplay --input-raw :80 --output-http "http://staging.server" --http-set-header "User-Agent: Replayed by Gor" --http-set-header "Enable-Feature-X: true"`
// ("if header already exists it will be overwritten").
#[test]
fn goreplay_set_header_overwrites_or_adds_the_headers() {
    let reqs = [
        get("/a", "User-Agent: curl/8.5\r\nAccept: */*\r\n"),
        get("/b", "Enable-Feature-X: false\r\n"),
    ];
    let got = mirrored(
        "gr-set-header",
        r#"./goreplay --input-raw {prod} --output-http "http://{staging}" --http-set-header "User-Agent: Replayed by Gor" --http-set-header "Enable-Feature-X: true""#,
        &reqs,
        2,
    );
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert_eq!(header(r, "User-Agent"), Some("Replayed by Gor"), "{r}");
        assert_eq!(header(r, "Enable-Feature-X"), Some("true"), "{r}");
        assert_eq!(r.matches("User-Agent").count(), 1, "{r}");
        assert_eq!(r.matches("Enable-Feature-X").count(), 1, "{r}");
    }
    assert_eq!(header(&got[0], "Accept"), Some("*/*"));
}

// docs/Request-rewriting.md, "Host header": "By default Host get set to the value
// specified in --output-http ... there is specific `--http-original-host` with tells
// GoReplay do not touch Host header at all":
// `./goreplay --input-raw :80 --output-http "http://staging.server" --http-original-host`.
#[test]
fn goreplay_original_host_keeps_the_host_header() {
    let reqs = [get("/a", "")];
    let line = r#"./goreplay --input-raw {prod} --output-http "http://{staging}""#;
    let got = mirrored("gr-host", line, &reqs, 1);
    let host = header(&got[0], "Host").expect("a Host header").to_string();
    assert!(
        host.starts_with("127.0.0.1:"),
        "Host becomes staging's: {host}"
    );

    let with = format!("{line} --http-original-host");
    let got = mirrored("gr-original-host", &with, &reqs, 1);
    assert_eq!(header(&got[0], "Host"), Some("prod.example"));
}

/// Writes an executable program into `dir`.
fn program(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the middleware");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

// docs/Middleware.md: "Simple bash echo middleware (returns same request) will look like
// this: `while read line; do echo $line; done`", enabled with
// `gor --input-raw :80 --middleware "/opt/middleware_executable" --output-http "http://staging.server"`.
#[test]
fn goreplay_bash_echo_middleware_returns_the_same_requests() {
    let dir = temp_dir("gr-mw-echo-prog");
    let mw = program(
        &dir,
        "echo.sh",
        "#!/bin/bash\nwhile read line; do\n  echo $line\ndone\n",
    );
    let reqs = [
        get("/a?x=1", "X-A: 1\r\n"),
        "POST /b HTTP/1.1\r\nHost: prod.example\r\nContent-Length: 5\r\n\r\nhello".to_string(),
        get("/c", ""),
    ];
    let got = mirrored(
        "gr-mw-echo",
        &format!(
            r#"gor --input-raw {{prod}} --middleware "{mw}" --output-http "http://{{staging}}" --http-original-host"#
        ),
        &reqs,
        3,
    );
    assert_eq!(got, reqs, "the requests, byte for byte");
}

/// A middleware written from docs/Middleware.md's protocol: it filters (by not sending
/// a request back) and edits what it returns.
const PY_MIDDLEWARE: &str = r#"import binascii, sys
for line in sys.stdin:
    data = binascii.unhexlify(line.strip())
    meta, _, payload = data.partition(b"\n")
    if payload.startswith(b"GET /private"):
        continue
    head, sep, body = payload.partition(b"\r\n\r\n")
    payload = head + b"\r\nX-Middleware: yes" + sep + body
    sys.stdout.write(binascii.hexlify(meta + b"\n" + payload).decode() + "\n")
    sys.stdout.flush()
"#;

// docs/Middleware.md: "If you want to filter request, just not send it"; the page's
// `gor --input-raw :80 --middleware "/opt/middleware_executable" --output-http "http://staging.server"`
// with a filter after it: as in GoReplay, the filters see what the middleware returned
// (here the header it adds), and the intake (`--input-raw-realip-header`) comes before it.
#[test]
fn goreplay_middleware_filters_and_edits_before_the_filters() {
    let dir = temp_dir("gr-mw-py-prog");
    let mw = format!("python3 {}", program(&dir, "mw.py", PY_MIDDLEWARE));
    let reqs = [get("/a", ""), get("/private/b", ""), get("/c", "")];
    let got = mirrored(
        "gr-mw-py",
        &format!(
            r#"gor --input-raw {{prod}} --middleware "{mw}" --output-http "http://{{staging}}" --http-allow-header "X-Middleware: ^yes$" --input-raw-realip-header X-Real-IP"#
        ),
        &reqs,
        2,
    );
    assert_eq!(targets(&got), ["/a", "/c"]);
    for r in &got {
        assert_eq!(header(r, "X-Middleware"), Some("yes"), "{r}");
        assert_eq!(header(r, "X-Real-IP"), Some("127.0.0.1"), "{r}");
    }
}

// GoReplay 1.3's flag help (settings.go): `--http-basic-auth-filter` "A regexp to match
// the decoded basic auth string against. Requests with non-matching headers will be
// dropped: gor --input-raw :8080 --output-http staging.com --http-basic-auth-filter
// "^customer[0-9].*"".
#[test]
fn goreplay_basic_auth_filter_keeps_matching_credentials() {
    use base64::Engine;
    let auth = |creds: &str| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };
    let reqs = [
        get("/a", &auth("customer3:welcome")),
        get("/b", &auth("admin:hunter2")),
        get("/c", "Authorization: Bearer abc\r\n"),
        get("/d", ""),
        get("/e", &auth("customer7:rest@123^TEST")),
    ];
    let got = mirrored(
        "gr-basic-auth",
        r#"gor --input-raw {prod} --output-http {staging} --http-basic-auth-filter "^customer[0-9].*""#,
        &reqs,
        2,
    );
    assert_eq!(targets(&got), ["/a", "/e"]);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

// GoReplay 1.3's flag help (settings.go): `--prettify-http` "If enabled, will
// automatically decode requests and responses with: Content-Encoding: gzip and
// Transfer-Encoding: chunked", added to the README's mirroring command line:
// `gor --input-raw :80 --output-http "http://staging.com" --prettify-http`.
#[test]
fn goreplay_prettify_http_decodes_chunked_and_gzip_bodies() {
    let json = r#"{"order":42,"items":["a","b"]}"#;
    let chunked = format!(
        "POST /chunked HTTP/1.1\r\nHost: prod.example\r\nTransfer-Encoding: chunked\r\n\r\n\
         a\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        &json[..10],
        json.len() - 10,
        &json[10..]
    );
    // The gzip body is binary: the request is sent as bytes, compared after decoding.
    let gz = gzip(json.as_bytes());
    let mut gzipped = format!(
        "POST /gzip HTTP/1.1\r\nHost: prod.example\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    gzipped.extend_from_slice(&gz);
    let production = Staging::start(listen("127.0.0.1"));
    let staging = Staging::start(listen("127.0.0.1"));
    let line = format!(
        r#"gor --input-raw {} --output-http "http://{}" --prettify-http"#,
        production.addr, staging.addr
    );
    let args = shell_words(&line);
    let args: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let agent = Agent::start_args("gr-prettify", &args, &[]);
    let mut client = Raw::connect(production.addr);
    client.send(chunked.as_bytes());
    client.send(&gzipped);
    client.send(get("/plain", "").as_bytes());
    staging.wait_for(3, Duration::from_secs(20));
    agent.stop();
    let got: Vec<String> = staging
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .collect();
    assert_eq!(targets(&got), ["/chunked", "/gzip", "/plain"]);
    for r in &got[..2] {
        assert_eq!(body(r), json, "{r}");
        let len = json.len().to_string();
        assert_eq!(header(r, "Content-Length"), Some(len.as_str()), "{r}");
        assert_eq!(header(r, "Transfer-Encoding"), None, "{r}");
        assert_eq!(header(r, "Content-Encoding"), None, "{r}");
    }
    assert_eq!(body(&got[2]), "");
}

// GoReplay 1.3's flag help (settings.go): `--input-raw-realip-header` "If not blank,
// injects header with given name and real IP value to the request payload. Usually this
// header should be named: X-Real-IP", added to the README's mirroring command line:
// `gor --input-raw :80 --output-http "http://staging.com" --input-raw-realip-header X-Real-IP`.
#[test]
fn goreplay_realip_header_carries_the_client_address() {
    let reqs = [
        get("/a", ""),
        // A client's own value is replaced, as GoReplay's SetHeader does.
        get("/b", "X-Real-IP: 203.0.113.9\r\n"),
    ];
    let got = mirrored(
        "gr-realip",
        r#"gor --input-raw {prod} --output-http "http://{staging}" --input-raw-realip-header X-Real-IP"#,
        &reqs,
        2,
    );
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert_eq!(header(r, "X-Real-IP"), Some("127.0.0.1"), "{r}");
        assert_eq!(r.matches("X-Real-IP").count(), 1, "{r}");
    }
}

/// The splitter the tests read GoReplay's lines with, on the quoting those lines use.
#[test]
fn shell_words_splits_like_a_shell() {
    assert_eq!(
        shell_words(
            r#"gor --a "User-Agent: Replayed by Gor" 'x:^1\.0\d' /v1/([^\\/]+):$1  "q\"\x""#
        ),
        [
            "gor",
            "--a",
            "User-Agent: Replayed by Gor",
            r"x:^1\.0\d",
            r"/v1/([^\/]+):$1",
            r#"q"\x"#
        ]
    );
}
