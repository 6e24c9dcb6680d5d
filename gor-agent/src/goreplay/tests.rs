use std::net::IpAddr;

use clap::Parser;

use super::*;
use crate::config::Cli;

/// A host whose `eth0` holds 10.0.0.5.
fn lookup(ip: IpAddr) -> Option<String> {
    (ip == "10.0.0.5".parse::<IpAddr>().unwrap()).then(|| "eth0".to_string())
}

fn run(args: &[&str]) -> Result<Vec<String>, Refused> {
    let args = std::iter::once("gor")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    translate_with(args, &lookup)
        .map(|out| out.into_iter().map(|a| a.into_string().unwrap()).collect())
}

/// The translation of `args`, checked to be what `expected` says and to parse and
/// validate as a gor command line.
fn translates(args: &[&str], expected: &[&str]) {
    let out = run(args).unwrap_or_else(|e| panic!("{args:?} refused: {e}"));
    let mut want = vec!["gor"];
    want.extend_from_slice(expected);
    assert_eq!(out, want, "{args:?}");
    let cli = Cli::try_parse_from(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    if let Err(errs) = cli.validate() {
        panic!("{out:?} does not validate: {errs:?}");
    }
}

fn refused(args: &[&str]) -> Refused {
    match run(args) {
        Ok(out) => panic!("{args:?} was translated into {out:?}"),
        Err(e) => e,
    }
}

#[test]
fn goreplay_readme_command_lines_translate() {
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://staging.env|10",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://staging.env",
            "--rate",
            "10",
        ],
    );
    translates(
        &["--input-raw", ":8080", "--output-file", "requests.gor"],
        &["--ports", "8080", "--output-file", "requests.gor"],
    );
    translates(
        &[
            "--input-file",
            "requests.gor",
            "--output-http",
            "http://staging.env",
        ],
        &[
            "replay",
            "--input-file",
            "requests.gor",
            "--target",
            "http://staging.env",
        ],
    );
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://staging",
            "--http-allow-url",
            "/api",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://staging",
            "--http-allow-url",
            "/api",
        ],
    );
    translates(
        &[
            "--input-file",
            "requests.gor|200%",
            "--output-http",
            "staging.com",
        ],
        &[
            "replay",
            "--input-file",
            "requests.gor|200%",
            "--target",
            "http://staging.com",
        ],
    );
    translates(
        &[
            "--input-raw",
            ":8080",
            "--output-http",
            "staging.com",
            "--http-allow-method",
            "GET",
            "--http-allow-method",
            "OPTIONS",
            "--http-set-header",
            "User-Agent: Gor",
            "--http-rewrite-url",
            "/v1/user/([^\\/]+)/ping:/v2/user/$1/ping",
        ],
        &[
            "--ports",
            "8080",
            "--target",
            "http://staging.com",
            "--http-allow-method",
            "GET",
            "--http-allow-method",
            "OPTIONS",
            "--http-set-header",
            "User-Agent: Gor",
            "--http-rewrite-url",
            "/v1/user/([^\\/]+)/ping:/v2/user/$1/ping",
        ],
    );
    translates(
        &[
            "--input-raw",
            ":80",
            "--middleware",
            "./echo.sh",
            "--output-http",
            "http://staging.com",
            "--input-raw-track-response",
            "--output-http-track-response",
            "--http-original-host",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://staging.com",
            "--middleware",
            "./echo.sh",
            "--track-responses",
            "--track-staging-responses",
            "--original-host",
        ],
    );
    // The README's first example prints records on stdout, GoReplay's, not gor's raw
    // streams.
    translates(
        &["--input-raw", ":8000", "--output-stdout"],
        &["--ports", "8000", "--output-stdout-records"],
    );
}

/// GoReplay's docs/Distributed-configuration.md: a listener on each web host and a
/// replay server, plain and with TLS.
#[test]
fn distributed_configuration_command_lines_translate() {
    // "sudo gor --input-raw :80 --output-tcp replay.local:28020"
    translates(
        &["--input-raw", ":80", "--output-tcp", "replay.local:28020"],
        &["--ports", "80", "--output-tcp", "replay.local:28020"],
    );
    // "gor --input-tcp replay.local:28020 --output-http http://staging.com"
    translates(
        &[
            "--input-tcp",
            "replay.local:28020",
            "--output-http",
            "http://staging.com",
        ],
        &[
            "--input-tcp",
            "replay.local:28020",
            "--target",
            "http://staging.com",
        ],
    );
    // "--input-tcp :28020 --input-tcp-secure --input-tcp-certificate ./cert.pem
    // --input-certificate ./key.pem" (the doc's last flag is a typo for
    // --input-tcp-certificate-key, which is what GoReplay 1.3 reads).
    translates(
        &[
            "--input-tcp",
            ":28020",
            "--input-tcp-secure",
            "--input-tcp-certificate",
            "./cert.pem",
            "--input-tcp-certificate-key",
            "./key.pem",
            "--output-http",
            "staging",
        ],
        &[
            "--input-tcp",
            ":28020",
            "--target",
            "http://staging",
            "--input-tcp-secure",
            "--input-tcp-certificate",
            "./cert.pem",
            "--input-tcp-certificate-key",
            "./key.pem",
        ],
    );
    // "enable --output-tcp-secure flag for the GoReplay clients ... Use
    // --output-tcp-skip-verify to ignore TLS verification."
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-tcp",
            "replay.local:28020",
            "--output-tcp-secure",
            "--output-tcp-skip-verify",
            "--output-tcp-sticky",
            "--output-tcp-workers",
            "4",
            "-output-tcp-stats=true",
        ],
        &[
            "--ports",
            "80",
            "--output-tcp",
            "replay.local:28020",
            "--output-tcp-secure",
            "--output-tcp-skip-verify",
            "--output-tcp-sticky",
            "--output-tcp-workers",
            "4",
            "--output-tcp-stats",
        ],
    );
    // Saved traffic to a replay server: the output goes after `replay`, whose settings
    // it is.
    translates(
        &[
            "--input-file",
            "requests.gor",
            "--output-tcp",
            "replay.local:28020",
        ],
        &[
            "replay",
            "--input-file",
            "requests.gor",
            "--output-tcp",
            "replay.local:28020",
        ],
    );
    let e = refused(&["--input-tcp", ":1", "--input-file", "a.gor"]);
    assert_eq!(e.flag, "--input-tcp");
}

#[test]
fn every_spelling_of_go_flags() {
    let want = ["--ports", "80", "--track-responses"];
    for args in [
        &["--input-raw", ":80", "--input-raw-track-response"][..],
        &["-input-raw", ":80", "-input-raw-track-response"],
        &["-input-raw=:80", "--input-raw-track-response=true"],
        &["--input-raw=:80", "-input-raw-track-response=1"],
    ] {
        translates(args, &want);
    }
    translates(
        &["-input-raw", ":80", "-input-raw-track-response=false"],
        &["--ports", "80"],
    );
    // One dash on a flag GoReplay and gor share still makes it GoReplay's.
    translates(
        &["-output-file", "x.gor", "-input-raw", ":80"],
        &["--ports", "80", "--output-file", "x.gor"],
    );
    let e = refused(&["--input-raw", ":80", "--input-raw-track-response=maybe"]);
    assert!(e.message.contains("not a boolean"), "{e}");
    // Go's flag package gives a boolean its value only after `=`.
    let e = refused(&["--input-raw", ":80", "--input-raw-track-response", "true"]);
    assert_eq!(e.flag, "true");
    let e = refused(&["--input-raw"]);
    assert!(e.message.contains("needs a value"), "{e}");
}

#[test]
fn input_raw_addresses() {
    translates(&["--input-raw", "0.0.0.0:80"], &["--ports", "80"]);
    translates(
        &["--input-raw", "127.0.0.1:80"],
        &["--ports", "80", "--interfaces", "lo"],
    );
    translates(
        &["--input-raw", "[::1]:80"],
        &["--ports", "80", "--interfaces", "lo"],
    );
    translates(
        &["--input-raw", "lo:80"],
        &["--ports", "80", "--interfaces", "lo"],
    );
    translates(
        &["--input-raw", "localhost:80"],
        &["--ports", "80", "--interfaces", "lo"],
    );
    translates(
        &["--input-raw", "10.0.0.5:80"],
        &["--ports", "80", "--interfaces", "eth0"],
    );
    translates(
        &["--input-raw", ":8080", "--input-raw", ":80"],
        &["--ports", "80,8080"],
    );
    translates(
        &[
            "--input-raw",
            "lo:80",
            "--input-raw",
            "eth0:80",
            "--input-raw",
            "lo:81",
            "--input-raw",
            "10.0.0.5:81",
        ],
        &["--ports", "80,81", "--interfaces", "eth0,lo"],
    );
    let e = refused(&["--input-raw", "10.9.9.9:80"]);
    assert!(e.message.contains("no interface"), "{e}");
    for mixed in [
        &["--input-raw", "lo:80", "--input-raw", "eth0:8080"][..],
        &["--input-raw", ":80", "--input-raw", "lo:80"],
    ] {
        let e = refused(mixed);
        assert!(
            e.message
                .contains("different ports on different interfaces"),
            "{e}"
        );
    }
    for bad in ["80", ":http", ":0", "lo:"] {
        let e = refused(&["--input-raw", bad]);
        assert!(e.message.contains("[host|interface]:port"), "{bad}: {e}");
    }
}

#[test]
fn input_raw_engines() {
    for ok in ["libpcap", "raw_socket"] {
        translates(
            &["--input-raw", ":80", "--input-raw-engine", ok],
            &["--ports", "80"],
        );
    }
    for never in ["af_packet", "vxlan"] {
        let e = refused(&["--input-raw", ":80", "--input-raw-engine", never]);
        assert!(e.message.contains("eBPF"), "{e}");
    }
    let e = refused(&["--input-raw", ":80", "--input-raw-engine", "pcap_file"]);
    assert!(e.message.contains("--input-pcap"), "{e}");
    let e = refused(&[
        "--input-raw",
        ":80",
        "--input-raw-bpf-filter",
        "dst port 80",
    ]);
    assert_eq!(e.flag, "--input-raw-bpf-filter");
    assert!(e.message.contains("gor picks the packets"), "{e}");
}

#[test]
fn output_http_rates_and_settings() {
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://a:1|10%",
            "--output-http",
            "http://b:2|10%",
            "--output-http-workers",
            "8",
            "--output-http-timeout",
            "1m30s",
            "--output-http-queue-len",
            "500",
            "--output-http-stats",
            "--output-http-stats-ms",
            "2500",
            "--stats",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://a:1,http://b:2",
            "--rate",
            "10%",
            "--workers",
            "8",
            "--timeout",
            "90s",
            "--queue",
            "500",
            "--stats-interval",
            "2500ms",
        ],
    );
    // GoReplay's 0 workers (as many as needed) and 0 timeout (the default) add nothing.
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://a:1",
            "--output-http-workers",
            "0",
            "--output-http-timeout",
            "1.5s",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://a:1",
            "--timeout",
            "1500ms",
        ],
    );
    // Different limits: each target its own `|N` (GoReplay's README: "--output-http
    // "http://staging.com|10" --output-http "http://dev.com|50%""... per output).
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://a:1|10",
            "--output-http",
            "http://b:2|50%",
            "--output-http",
            "http://c:3",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://a:1|10,http://b:2|50%,http://c:3",
        ],
    );
    // Credentials stay in the URL: gor makes them basic auth.
    translates(
        &["--input-raw", ":80", "--output-http", "http://u:p@a:1"],
        &["--ports", "80", "--target", "http://u:p@a:1"],
    );
    // A path or a query: GoReplay's target replacement.
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "staging:81/api?k=v|5",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://staging:81/api?k=v",
            "--rate",
            "5",
            "--target-path",
            "replace",
        ],
    );
    let e = refused(&["--input-raw", ":80", "--output-http-timeout", "soon"]);
    assert!(e.message.contains("duration"), "{e}");
}

#[test]
fn output_file_sizes_and_placeholders() {
    for (given, gor) in [
        ("32mb", "32MiB"),
        ("32MB", "32MiB"),
        ("512kb", "512KiB"),
        ("1gb", "1GiB"),
        ("2tb", "2048GiB"),
        ("256m", "256MiB"),
        ("64K", "64KiB"),
        ("65536", "65536"),
    ] {
        translates(
            &[
                "--input-raw",
                ":80",
                "--output-file",
                "/tmp/r-%Y%m%d.gor",
                "--output-file-size-limit",
                given,
            ],
            &[
                "--ports",
                "80",
                "--output-file",
                "/tmp/r-%Y%m%d.gor",
                "--output-file-size-limit",
                gor,
            ],
        );
    }
    let e = refused(&["--input-raw", ":80", "--output-file-size-limit", "big"]);
    assert!(e.message.contains("size"), "{e}");
    for pattern in [
        "r-%NS.gor",
        "%r-%t.gor",
        "/tmp/%i/%Y%m%d%H%M%S.gor",
        "100%%.gor",
    ] {
        translates(
            &["--input-raw", ":80", "--output-file", pattern],
            &["--ports", "80", "--output-file", pattern],
        );
    }
    let e = refused(&["--input-raw", ":80", "--output-file", "r-%N.gor"]);
    assert!(e.message.contains("`%N.`"), "{e}");
    assert!(e.message.contains("%NS"), "{e}");
    let e = refused(&["--input-raw", ":80", "--output-file", "s3://bucket/x.gz"]);
    assert!(e.message.contains("local files"), "{e}");
    let e = refused(&[
        "--input-raw",
        ":80",
        "--output-file",
        "a.gor",
        "--output-file",
        "b.gor",
    ]);
    assert!(e.message.contains("more than once"), "{e}");
}

#[test]
fn input_file_settings() {
    translates(
        &[
            "--input-file",
            "r.gor",
            "--input-file-loop",
            "--input-file-max-wait",
            "1s",
            "--output-http",
            "http://s:1",
        ],
        &[
            "replay",
            "--input-file",
            "r.gor",
            "--target",
            "http://s:1",
            "--loop",
            "--max-wait",
            "1s",
        ],
    );
    // Each input with its own speed, as GoReplay's inputs are plugins of their own.
    translates(
        &[
            "--input-file",
            "a.gor|200%",
            "--input-file",
            "b-*.gor",
            "--input-file-dry-run",
        ],
        &[
            "replay",
            "--input-file",
            "a.gor|200%",
            "--input-file",
            "b-*.gor",
            "--dry-run",
        ],
    );
    let e = refused(&["--input-file", "a.gor|10", "--output-http", "http://s:1"]);
    assert!(e.message.contains("--rate 10"), "{e}");
    let e = refused(&["--input-file", "a.gor", "--input-raw", ":80"]);
    assert!(e.message.contains("one input at a time"), "{e}");
}

#[test]
fn outputs_and_the_run_as_goreplay_means_them() {
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-null",
            "--output-dummy",
            "x",
            "--exit-after",
            "1m30s",
        ],
        &[
            "--ports",
            "80",
            "--output-stdout-records",
            "--exit-after",
            "90s",
        ],
    );
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-file",
            "%Y%m%d.log",
            "--output-file-append",
            "--output-file-max-size-limit",
            "1gb",
            "--output-file-flush-interval",
            "250ms",
            "--output-file-queue-limit",
            "0",
        ],
        &[
            "--ports",
            "80",
            "--output-file",
            "%Y%m%d.log",
            "--output-file-append",
            "--output-file-max-size-limit",
            "1GiB",
            "--output-file-flush-interval",
            "250ms",
            "--output-file-queue-limit",
            "0",
        ],
    );
    // GoReplay's defaults and zeros: no cap, its 100ms flush.
    translates(
        &[
            "--input-file",
            "r.gor",
            "--output-file",
            "c.gor",
            "--output-file-max-size-limit",
            "-1",
            "--output-file-flush-interval",
            "0",
            "--exit-after",
            "0",
        ],
        &[
            "replay",
            "--input-file",
            "r.gor",
            "--output-file",
            "c.gor",
            "--output-file-flush-interval",
            "100ms",
        ],
    );
    let e = refused(&["--input-raw", ":80", "--exit-after", "soon"]);
    assert_eq!(e.flag, "--exit-after");
    let e = refused(&["--input-raw", ":80", "--output-file-queue-limit", "many"]);
    assert!(e.message.contains("number of records"), "{e}");
}

#[test]
fn logging_flags() {
    for v in [
        &["--verbose"][..],
        &["-verbose"],
        &["--verbose", "2"],
        &["--verbose=true"],
        &["--debug"],
    ] {
        let mut args = vec!["--input-raw", ":80"];
        args.extend_from_slice(v);
        translates(&args, &["--ports", "80", "--log", "debug"]);
    }
    translates(&["--input-raw", ":80", "--verbose=0"], &["--ports", "80"]);
}

#[test]
fn gor_flags_pass_through_a_goreplay_command_line() {
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://s:1",
            "--compare",
            "--compare-timeout",
            "10s",
            "--log=info",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://s:1",
            "--compare",
            "--compare-timeout",
            "10s",
            "--log=info",
        ],
    );
}

/// GoReplay's docs/Request-rewriting.md and the flags' help in settings.go.
#[test]
fn goreplay_set_param_basic_auth_prettify_and_realip_translate() {
    translates(
        &[
            "--input-raw",
            ":8080",
            "--output-http",
            "staging.com",
            "--http-set-param",
            "api_key=1",
        ],
        &[
            "--ports",
            "8080",
            "--target",
            "http://staging.com",
            "--http-set-param",
            "api_key=1",
        ],
    );
    translates(
        &[
            "--input-raw",
            ":8080",
            "--output-http",
            "staging.com",
            "--http-basic-auth-filter",
            "^customer[0-9].*",
            "--input-raw-realip-header",
            "X-Real-IP",
            "--prettify-http",
        ],
        &[
            "--ports",
            "8080",
            "--target",
            "http://staging.com",
            "--http-basic-auth-filter",
            "^customer[0-9].*",
            "--http-realip-header",
            "X-Real-IP",
            "--http-prettify",
        ],
    );
    // A boolean given as Go spells it.
    translates(
        &["--input-raw", ":80", "-prettify-http=false"],
        &["--ports", "80"],
    );
}

#[test]
fn output_http_redirects_becomes_redirects() {
    // GoReplay's README, "Follow redirects": `--output-http-redirects 2`.
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://staging.com",
            "--output-http-redirects",
            "2",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://staging.com",
            "--redirects",
            "2",
        ],
    );
    // 0 (GoReplay's default) and below never follow: gor's default, nothing added.
    for n in ["0", "-1"] {
        translates(
            &["--input-raw", ":80", "--output-http-redirects", n],
            &["--ports", "80"],
        );
    }
    let e = refused(&["--input-raw", ":80", "--output-http-redirects", "two"]);
    assert_eq!(e.flag, "--output-http-redirects");
}

#[test]
fn flags_gor_does_not_implement_are_refused_by_name() {
    for (flag, value, says) in [
        // One --output-tcp is translated; a second is refused.
        ("--output-tcp", Some("replay:28020"), "more than once"),
        // As another input besides --input-raw.
        ("--input-tcp", Some(":28020"), "not supported by gor yet"),
        ("--output-kafka-host", Some("k:9092"), "Kafka"),
        (
            "--output-http-elasticsearch",
            Some("es:9200/i"),
            "ElasticSearch",
        ),
        ("--input-raw-protocol", Some("binary"), "HTTP/1.x only"),
        ("--output-binary", Some("s:80"), "HTTP/1.x only"),
        ("--input-binary", Some(":80"), "HTTP/1.x only"),
    ] {
        let mut args = vec!["--input-raw", ":80", flag];
        if flag == "--output-tcp" {
            args = vec!["--input-raw", ":80", "--output-tcp", "other:28020", flag];
        }
        args.extend(value);
        let e = refused(&args);
        assert_eq!(e.flag, flag);
        assert!(e.message.contains(says), "{flag}: {e}");
        assert!(e.to_string().contains(flag), "{e}");
    }
    let e = refused(&["--input-raw", ":80", "--no-such-flag"]);
    assert_eq!(e.flag, "--no-such-flag");
    assert!(e.message.contains("neither a GoReplay"), "{e}");
}

/// Every flag of the table: a GoReplay command line with it is translated into one gor
/// parses, or refused with a message that names it.
#[test]
fn every_goreplay_flag_is_translated_or_refused() {
    for flag in flags::FLAGS {
        let value = match flag.name {
            "input-raw" => ":81",
            "input-raw-engine" => "libpcap",
            "output-http" => "http://s:1",
            "input-file" => "r.gor",
            "input-file-max-wait" | "output-http-timeout" => "2s",
            "output-http-workers"
            | "output-http-queue-len"
            | "output-http-stats-ms"
            | "output-http-redirects" => "3",
            "output-file-size-limit"
            | "output-http-response-buffer"
            | "output-file-max-size-limit" => "1mb",
            "exit-after" | "output-file-flush-interval" => "1m30s",
            "output-file-queue-limit" => "256",
            "http-header-limiter" | "http-param-limiter" | "output-http-header-hash-filter" => {
                "user-id: 25%"
            }
            "http-allow-header"
            | "http-disallow-header"
            | "output-http-header-filter"
            | "http-set-header"
            | "output-http-header" => "X-A: b",
            "http-rewrite-url" | "output-http-rewrite-url" => "/a:/b",
            "http-rewrite-header" => "Host: (.*).x,$1.y",
            "http-allow-method" | "output-http-method" => "GET",
            "http-set-param" => "api_key=1",
            "input-raw-realip-header" => "X-Real-IP",
            "output-tcp" => "replay:28020",
            "output-tcp-workers" => "4",
            "input-tcp" => ":28020",
            _ => "v",
        };
        let mut args = vec![format!("--{}", flag.name)];
        if flag.arity == flags::Arity::Value {
            args.push(value.to_string());
        }
        let input: &[&str] = if flag.name.starts_with("input-file") {
            &["--input-file", "r.gor"]
        } else if flag.name == "input-raw" {
            &[]
        } else if flag.name == "input-tcp" {
            &["--output-http", "http://s:1"]
        } else {
            &["--input-raw", ":80"]
        };
        let mut all: Vec<&str> = input.to_vec();
        all.extend(args.iter().map(String::as_str));
        if flag.name.contains("track-response") && flag.name.starts_with("output-http") {
            all.extend(["--output-http", "http://s:1"]);
        }
        match (flag.fate, run(&all)) {
            (flags::Fate::Translated, Ok(out)) => {
                let cli = Cli::try_parse_from(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
                cli.validate()
                    .unwrap_or_else(|e| panic!("{out:?} does not validate: {e:?}"));
            }
            (flags::Fate::Translated, Err(e)) => panic!("{all:?} refused: {e}"),
            (_, Ok(out)) => panic!("{all:?} was translated into {out:?}"),
            (_, Err(e)) => assert_eq!(e.flag, format!("--{}", flag.name)),
        }
    }
}

#[test]
fn the_readme_names_every_goreplay_flag() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Coming from GoReplay")
        .nth(1)
        .expect("the README has a \"Coming from GoReplay\" section");
    for flag in flags::FLAGS {
        let named = |end: &str| section.contains(&format!("`--{}{end}", flag.name));
        assert!(
            named("`") || named(" "),
            "the README's migration table does not name --{}",
            flag.name
        );
    }
}

/// gor's own command lines are never rewritten, even where they use flags that
/// GoReplay has too.
#[test]
fn gor_command_lines_pass_through_unchanged() {
    for args in [
        &[][..],
        &["--help"],
        &["-h"],
        &["--version"],
        &["--ports", "80"],
        &[
            "--ports",
            "80,8080",
            "--interfaces",
            "lo",
            "--target",
            "http://s:1",
            "--rate",
            "10%",
        ],
        &["--ports", "80", "--output-stdout"],
        &[
            "--ports",
            "80",
            "--output-file",
            "r.gor",
            "--output-file-size-limit",
            "32MiB",
        ],
        &[
            "--ports",
            "80",
            "--track-responses",
            "--output-http-track-response",
            "--target",
            "http://s:1",
        ],
        &[
            "--ports",
            "80",
            "--middleware",
            "./mw --input-raw",
            "--http-allow-url",
            "/api",
        ],
        &[
            "--ports=80",
            "--http-set-header",
            "X-A: 1",
            "--set-header",
            "X-B: 2",
        ],
        &[
            "replay",
            "--input-file",
            "r.gor|200%",
            "--input-file-loop",
            "--target",
            "http://s:1",
        ],
        &[
            "replay",
            "--input-file",
            "r.gor",
            "--input-file-max-wait",
            "1s",
        ],
        &["check", "--ports", "80"],
        &["report", "d.jsonl", "--html", "r.html"],
        // A value that looks like a GoReplay flag is a value.
        &["--ports", "80", "--set-header", "--input-raw"],
        &["--log", "debug", "replay", "--input-file", "r.gor"],
        &["--", "--input-raw"],
    ] {
        let mut want = vec!["gor"];
        want.extend_from_slice(args);
        assert_eq!(run(args).unwrap(), want, "{args:?}");
    }
}

#[test]
fn go_units() {
    assert_eq!(go_duration("f", "0").unwrap(), None);
    assert_eq!(go_duration("f", "250ms").unwrap().as_deref(), Some("250ms"));
    assert_eq!(go_duration("f", "1h").unwrap().as_deref(), Some("3600s"));
    assert_eq!(go_duration("f", "2m").unwrap().as_deref(), Some("120s"));
    for bad in ["", "5", "1x", "1us", "s"] {
        assert!(go_duration("f", bad).is_err(), "{bad}");
    }
    for bad in ["0", "-1", "1pb", "mb"] {
        assert!(go_size("f", bad).is_err(), "{bad}");
    }
}

#[test]
fn loopback_has_an_interface() {
    // The real lookup, on this host: 127.0.0.1 is on `lo` (where it is not mapped).
    assert_eq!(
        interface_holding("127.0.0.1".parse().unwrap()).as_deref(),
        Some("lo")
    );
    assert_eq!(interface_holding("192.0.2.123".parse().unwrap()), None);
}

#[test]
fn split_output_response_buffer_http_debug_and_skip_verify_translate() {
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://a:1",
            "--output-http",
            "http://b:2",
            "--split-output",
            "--output-http-response-buffer",
            "512kb",
            "-output-http-debug",
            "--output-http-skip-verify",
        ],
        &[
            "--ports",
            "80",
            "--target",
            "http://a:1,http://b:2",
            "--split-output",
            "--staging-response-max-body",
            "512KiB",
            "--log",
            "debug",
            "--tls-skip-verify",
        ],
    );
    translates(
        &[
            "--input-raw",
            ":80",
            "--output-http",
            "http://a:1",
            "--split-output=false",
        ],
        &["--ports", "80", "--target", "http://a:1"],
    );
}
