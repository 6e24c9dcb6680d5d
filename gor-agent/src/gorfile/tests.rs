//! Tests of the `.gor` format: byte layout against GoReplay's, round trips (separator-like
//! and binary bodies, gzip), merging, rotation, time names, damage and write errors.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;

use super::reader::wildcard_match;
use super::writer::{civil_from_days, expand, Names};
use super::*;
use crate::clock::ToWall;
use crate::envelope::{ConnKey, Origin};
use crate::http::{HttpMessage, Kind};
use crate::output::messages::MessageOutput;
use crate::stream::{Direction, Flow};

const SEP: &str = "\n🐵🙈🙉\n";

fn rec(kind: RecordType, id: u64, ts: u64, payload: &[u8]) -> Record {
    Record {
        kind,
        id: format_id(id),
        timestamp_ns: ts,
        latency_ns: if kind.is_response() { 7 } else { 0 },
        payload: Bytes::copy_from_slice(payload),
    }
}

fn read_all(pattern: &str) -> (Vec<Record>, Vec<ReadError>) {
    let mut r = GorReader::open(pattern).expect("open");
    let recs: Vec<Record> = r.by_ref().collect();
    (recs, r.damaged().to_vec())
}

fn write_file(path: &Path, recs: &[Record]) {
    let mut out = Vec::new();
    for r in recs {
        encode(r, &mut out);
    }
    fs::write(path, out).expect("write");
}

fn out_cfg(pattern: &Path, max_size: Option<u64>) -> FileOutputConfig {
    FileOutputConfig::new(pattern.to_str().expect("utf8 path"), max_size, true)
}

/// The time placeholders only, as if for a record of that second.
fn expand_time(pattern: &str, secs: u64) -> String {
    let names = Names {
        secs,
        nanos: 7,
        id: "ID",
        kind: '1',
        instance: "INST",
    };
    expand(pattern, &names)
}

fn message(id: u64, ts: u64, request: bool, raw: &[u8]) -> HttpMessage {
    let addr: SocketAddr = "10.0.0.1:80".parse().expect("addr");
    HttpMessage {
        // An id as GoReplay would have written it (framed ids: `envelope::tests`).
        id: MessageId::parse(&format_id(id)),
        clock: Clock::Monotonic,
        flow: Flow {
            client: "10.0.0.2:5000".parse().expect("addr"),
            server: addr,
        },
        dir: if request {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        },
        offset: 0,
        first_ts_ns: ts,
        last_ts_ns: ts,
        raw: Bytes::copy_from_slice(raw),
        kind: if request {
            Kind::Request {
                method: "GET".into(),
                target: "/".into(),
                version: 1,
            }
        } else {
            Kind::Response {
                status: 200,
                reason: "OK".into(),
                version: 1,
            }
        },
        headers: Vec::new(),
        body_offset: raw.len(),
        latency_ns: (!request).then_some(1234),
    }
}

#[test]
fn layout_matches_goreplay() {
    let r = Record {
        kind: RecordType::Request,
        id: "8e4f0b2c4a5b6c7d8e9f0a1b".into(),
        timestamp_ns: 1_632_001_232_000_000_000,
        latency_ns: 0,
        payload: Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    };
    let mut out = Vec::new();
    encode(&r, &mut out);
    let expected = format!(
        "1 8e4f0b2c4a5b6c7d8e9f0a1b 1632001232000000000 0\nGET / HTTP/1.1\r\nHost: x\r\n\r\n{SEP}"
    );
    assert_eq!(out, expected.as_bytes());
    assert_eq!(
        SEPARATOR,
        b"\n\xF0\x9F\x90\xB5\xF0\x9F\x99\x88\xF0\x9F\x99\x89\n"
    );
    assert_eq!(format_id(0xabc), "000000000000000000000abc");
}

#[test]
fn reads_hand_made_goreplay_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gr.gor");
    let text = format!(
        "1 8e4f0b2c4a5b6c7d8e9f0a1b 1632001232000000000 0\nGET / HTTP/1.1\r\nHost: x\r\n\r\n{SEP}\
         2 8e4f0b2c4a5b6c7d8e9f0a1b 1632001232000500000 500000\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi{SEP}\
         1 a1 1632001233000000000\nPOST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n{SEP}"
    );
    fs::write(&path, text).expect("write");
    let (recs, damaged) = read_all(path.to_str().expect("utf8"));
    assert!(damaged.is_empty(), "{damaged:?}");
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].kind, RecordType::Request);
    assert_eq!(recs[0].id, "8e4f0b2c4a5b6c7d8e9f0a1b");
    assert_eq!(recs[0].timestamp_ns, 1_632_001_232_000_000_000);
    assert_eq!(&recs[0].payload[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(recs[1].kind, RecordType::Response);
    assert_eq!(recs[1].latency_ns, 500_000);
    assert_eq!(
        &recs[1].payload[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    );
    // Older GoReplay: no latency field.
    assert_eq!(recs[2].id, "a1");
    assert_eq!(recs[2].latency_ns, 0);
}

#[test]
fn round_trip_tricky_bodies() {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let sep_then_text = format!("POST / HTTP/1.1\r\n\r\nbefore{SEP}not a meta line\nmore");
    let sep_at_end = format!("abc{SEP}");
    let sep_then_sep = format!("x{SEP}🐵🙈🙉\n{SEP}y");
    let payloads: Vec<&[u8]> = vec![
        b"",
        b"\n",
        b"\n\n",
        &all_bytes,
        sep_then_text.as_bytes(),
        sep_at_end.as_bytes(),
        sep_then_sep.as_bytes(),
        SEP.as_bytes(),
        "🐵🙈🙉".as_bytes(),
        b"no newline at all",
    ];
    let recs: Vec<Record> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| rec(RecordType::Request, i as u64, 100 + i as u64, p))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.gor");
    write_file(&path, &recs);
    let (back, damaged) = read_all(path.to_str().expect("utf8"));
    assert!(damaged.is_empty(), "{damaged:?}");
    assert_eq!(back, recs);
}

#[test]
fn meta_parsing() {
    assert!(parse_meta(b"1 abc 1 0\n").is_some());
    assert!(parse_meta(b"3 abc 1 2\n").is_some());
    assert!(parse_meta(b"4 abc 1 0\n").is_none());
    assert!(parse_meta(b"1 abc 1x 0\n").is_none());
    assert!(parse_meta(b"1  abc 1 0\n").is_none());
    assert!(parse_meta(b"1 abc 1 0 9\n").is_none());
    assert!(parse_meta(b"1 abc 1 0").is_none());
    assert!(parse_meta(b"1 abc 99999999999999999999999 0\n").is_none());
    assert!(looks_like_meta(b"1 abc 12x 0\n"));
    assert!(!looks_like_meta(b"not a meta line\n"));
}

#[test]
fn from_message_fields() {
    let req = message(0x1f, 1_000, true, b"GET / HTTP/1.1\r\n\r\n");
    let r = Record::from_message(&req, 5_000);
    assert_eq!(r.kind, RecordType::Request);
    assert_eq!(r.id, "00000000000000000000001f");
    assert_eq!(r.timestamp_ns, 6_000);
    assert_eq!(r.latency_ns, 0);
    let resp = message(0x1f, 2_000, false, b"HTTP/1.1 200 OK\r\n\r\n");
    let r = Record::from_message(&resp, -10_000);
    assert_eq!(r.kind, RecordType::Response);
    assert_eq!(r.timestamp_ns, 0, "clamped at the epoch");
    assert_eq!(r.latency_ns, 1234);
}

#[test]
fn output_writes_goreplay_layout_with_mode_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.gor");
    let mut out =
        FileOutput::new(out_cfg(&path, None), ToWall::with_monotonic_offset(1_000)).expect("new");
    out.message(&message(1, 1, true, b"GET / HTTP/1.1\r\n\r\n"))
        .expect("msg");
    out.message(&message(1, 2, false, b"HTTP/1.1 200 OK\r\n\r\n"))
        .expect("msg");
    out.finish().expect("finish");
    let data = fs::read(&path).expect("read");
    let expected = format!(
        "1 000000000000000000000001 1001 0\nGET / HTTP/1.1\r\n\r\n{SEP}\
         2 000000000000000000000001 1002 1234\nHTTP/1.1 200 OK\r\n\r\n{SEP}"
    );
    assert_eq!(data, expected.as_bytes());
    let mode = fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let s = out.stats();
    assert_eq!(s.records_written, 2);
    assert_eq!(s.bytes_written, expected.len() as u64);
    assert_eq!(s.files_opened, 1);
    assert_eq!(s.write_errors, 0);
}

#[test]
fn responses_not_written_without_tracking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.gor");
    let mut cfg = out_cfg(&path, None);
    cfg.track_responses = false;
    let mut out = FileOutput::new(cfg, ToWall::with_monotonic_offset(0)).expect("new");
    out.message(&message(1, 1, true, b"GET / HTTP/1.1\r\n\r\n"))
        .expect("msg");
    out.message(&message(1, 2, false, b"HTTP/1.1 200 OK\r\n\r\n"))
        .expect("msg");
    out.finish().expect("finish");
    let (recs, _) = read_all(path.to_str().expect("utf8"));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].kind, RecordType::Request);
}

#[test]
fn never_overwrites_existing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.gor");
    fs::write(&path, b"keep me").expect("write");
    let mut out =
        FileOutput::new(out_cfg(&path, None), ToWall::with_monotonic_offset(0)).expect("new");
    out.write_record(&rec(RecordType::Request, 1, 1, b"x"));
    out.finish().expect("finish");
    assert_eq!(fs::read(&path).expect("read"), b"keep me");
    assert!(dir.path().join("old_1.gor").exists());
}

#[test]
fn gzip_round_trip_and_mixed_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = dir.path().join("a.gor.gz");
    let mut out =
        FileOutput::new(out_cfg(&gz, None), ToWall::with_monotonic_offset(0)).expect("new");
    let mut expected = Vec::new();
    for i in 0..200u64 {
        let body = format!("GET /{i} HTTP/1.1\r\nHost: example\r\n\r\n");
        let r = rec(RecordType::Request, i, i * 10, body.as_bytes());
        out.write_record(&r);
        expected.push(r);
    }
    out.finish().expect("finish");
    let data = fs::read(&gz).expect("read");
    assert_eq!(&data[..2], &[0x1f, 0x8b]);
    let (back, damaged) = read_all(gz.to_str().expect("utf8"));
    assert!(damaged.is_empty());
    assert_eq!(back, expected);

    // A plain file with timestamps in between; a name without `.gz` for a gzip file, to
    // show detection is by magic bytes.
    let plain = dir.path().join("b.gor");
    let others: Vec<Record> = (0..200u64)
        .map(|i| rec(RecordType::Request, 1000 + i, i * 10 + 5, b"plain"))
        .collect();
    write_file(&plain, &others);
    fs::rename(&gz, dir.path().join("a.gor")).expect("rename");
    let pattern = dir.path().join("*.gor");
    let (merged, damaged) = read_all(pattern.to_str().expect("utf8"));
    assert!(damaged.is_empty());
    assert_eq!(merged.len(), 400);
    assert!(merged
        .windows(2)
        .all(|w| w[0].timestamp_ns <= w[1].timestamp_ns));
    assert_eq!(merged[0], expected[0]);
    assert_eq!(merged[1], others[0]);
}

fn rotation(name: &str, limit: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    let mut out = FileOutput::new(
        out_cfg(&path, Some(limit)),
        ToWall::with_monotonic_offset(0),
    )
    .expect("new");
    let mut expected = Vec::new();
    for i in 0..300u64 {
        // Varied text so gzip does not shrink it to nothing.
        let body = format!("GET /{} HTTP/1.1\r\nX: {}\r\n\r\n", i * 7919 % 1013, i * i);
        let r = rec(RecordType::Request, i, i, body.as_bytes());
        out.write_record(&r);
        expected.push(r);
    }
    // One record larger than the limit gets a file of its own.
    // Pseudo-random, so it stays larger than the limit when compressed too.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let big: Vec<u8> = (0..limit as usize + 100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let r = rec(RecordType::Request, 999, 1000, &big);
    out.write_record(&r);
    expected.push(r);
    let r = rec(RecordType::Request, 1000, 1001, b"last");
    out.write_record(&r);
    expected.push(r);
    out.finish().expect("finish");

    let mut files: Vec<_> = fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(out.stats().files_opened, files.len() as u64);
    let mut over = 0;
    for f in &files {
        let size = fs::metadata(f).expect("meta").len();
        if size > limit {
            over += 1;
            let (recs, _) = read_all(f.to_str().expect("utf8"));
            assert_eq!(recs.len(), 1, "an oversized file holds one record");
        }
    }
    assert_eq!(over, 1);
    let stem = name.split('.').next().expect("stem");
    let ext = &name[stem.len()..];
    assert!(dir.path().join(format!("{stem}_1{ext}")).exists());
    let pattern = dir.path().join(format!("{stem}*{ext}"));
    let (back, damaged) = read_all(pattern.to_str().expect("utf8"));
    assert!(damaged.is_empty());
    assert_eq!(back, expected);
}

#[test]
fn rotation_plain() {
    rotation("traffic.gor", 2000);
}

#[test]
fn rotation_gzip() {
    rotation("traffic.gor.gz", 1500);
}

#[test]
fn time_placeholders_make_files_per_hour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pattern = dir.path().join("%Y/t-%Y%m%d-%H.gor");
    let mut out =
        FileOutput::new(out_cfg(&pattern, None), ToWall::with_monotonic_offset(0)).expect("new");
    let hour = 3_600_000_000_000u64;
    let t0 = 1_632_001_232_000_000_000u64; // 2021-09-18 21:40:32 UTC
    out.write_record(&rec(RecordType::Request, 1, t0, b"a"));
    out.write_record(&rec(RecordType::Request, 2, t0 + 1, b"b"));
    out.write_record(&rec(RecordType::Request, 3, t0 + hour, b"c"));
    // Late by a little: stays in the newer file rather than reopening the old hour.
    out.write_record(&rec(RecordType::Request, 4, t0 + hour - 2, b"d"));
    out.finish().expect("finish");
    let a = dir.path().join("2021/t-20210918-21.gor");
    let b = dir.path().join("2021/t-20210918-22.gor");
    assert_eq!(read_all(a.to_str().expect("utf8")).0.len(), 2);
    assert_eq!(read_all(b.to_str().expect("utf8")).0.len(), 2);
    assert_eq!(out.stats().files_opened, 2);
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    assert_eq!(civil_from_days(19_417), (2023, 3, 1));
    assert_eq!(
        expand_time("%Y-%m-%dT%H:%M:%S %% %x", 1_632_001_232),
        "2021-09-18T21:40:32 % %x"
    );
    assert_eq!(expand_time("%Y%m%d", 951_868_799), "20000229");
}

#[test]
fn goreplay_placeholders_expand() {
    let names = Names {
        secs: 1_632_001_232,
        nanos: 5_000,
        id: "abc/def",
        kind: '2',
        instance: "0a1b2c3d",
    };
    assert_eq!(
        expand("%Y%m%d-%H%M%S.%NS-%r-%t-%i-%N-%%.gor", &names),
        "20210918-214032.5000-abc_def-2-0a1b2c3d-%N-%.gor"
    );
}

#[test]
fn wildcards() {
    assert!(wildcard_match("*.gor", "a.gor"));
    assert!(wildcard_match("t*_?.gor*", "traffic_1.gor.gz"));
    assert!(wildcard_match("*", ""));
    assert!(!wildcard_match("*.gor", "a.gor.gz"));
    assert!(!wildcard_match("a?c", "ac"));
    assert!(wildcard_match("*a*b", "xxaybab"));
}

#[test]
fn damaged_records_are_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs: Vec<Record> = (0..5u64)
        .map(|i| {
            rec(
                RecordType::Request,
                i,
                i,
                format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes(),
            )
        })
        .collect();
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for r in &recs {
        offsets.push(data.len());
        encode(r, &mut data);
    }
    // Corrupt record 2's timestamp field.
    let ts_at = offsets[2] + 2 + recs[2].id.len() + 1;
    data[ts_at] = b'x';
    // Cut record 4 in its payload.
    data.truncate(offsets[4] + 40);
    let path = dir.path().join("bad.gor");
    fs::write(&path, &data).expect("write");
    let (back, damaged) = read_all(path.to_str().expect("utf8"));
    assert_eq!(
        back,
        vec![recs[0].clone(), recs[1].clone(), recs[3].clone()]
    );
    assert_eq!(damaged.len(), 2, "{damaged:?}");
    assert_eq!(damaged[0].file, path);
    assert_eq!(damaged[0].offset, offsets[2] as u64);
    assert!(damaged[0].reason.contains("meta"));
    assert_eq!(damaged[1].offset, offsets[4] as u64);
    assert!(damaged[1].reason.contains("cut"));
}

#[test]
fn garbage_at_start_and_cut_gzip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs: Vec<Record> = (0..50u64)
        .map(|i| {
            rec(
                RecordType::Request,
                i,
                i,
                format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes(),
            )
        })
        .collect();
    let mut data = b"garbage line\nmore garbage".to_vec();
    data.extend_from_slice(SEP.as_bytes());
    for r in &recs {
        encode(r, &mut data);
    }
    let path = dir.path().join("g.gor");
    fs::write(&path, &data).expect("write");
    let (back, damaged) = read_all(path.to_str().expect("utf8"));
    assert_eq!(back, recs);
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].offset, 0);

    // A gzip file cut short: the records before the cut are read, the cut is reported.
    let gz = dir.path().join("c.gor.gz");
    let mut out =
        FileOutput::new(out_cfg(&gz, None), ToWall::with_monotonic_offset(0)).expect("new");
    for r in &recs {
        out.write_record(r);
    }
    out.finish().expect("finish");
    let full = fs::read(&gz).expect("read");
    fs::write(&gz, &full[..full.len() - 20]).expect("write");
    let (back, damaged) = read_all(gz.to_str().expect("utf8"));
    assert!(!back.is_empty() && back.len() <= recs.len());
    assert_eq!(back[..], recs[..back.len()]);
    assert!(!damaged.is_empty());
}

#[test]
fn write_errors_are_counted() {
    let path = Path::new("/dev/full");
    if !path.exists() {
        return;
    }
    let mut out =
        FileOutput::new(out_cfg(path, Some(10)), ToWall::with_monotonic_offset(0)).expect("new");
    for i in 0..5 {
        out.message(&message(i, i, true, b"GET / HTTP/1.1\r\n\r\n"))
            .expect("never fails");
    }
    out.finish().expect("never fails");
    let s = out.stats();
    assert!(s.write_errors >= 1, "{s:?}");
    assert_eq!(s.records_dropped, 5);
    assert_eq!(s.records_written, 0);
    // Still usable after the error.
    out.write_record(&rec(RecordType::Request, 9, 9, b"x"));
    assert_eq!(out.stats().records_dropped, 6);
}

#[test]
fn open_errors() {
    assert!(GorReader::open("/nonexistent-dir-xyz/*.gor").is_err());
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(GorReader::open(dir.path().join("*.none").to_str().expect("utf8")).is_err());
}

#[test]
fn records_become_messages_with_their_ids_and_framing_checked() {
    let framed = MessageId::framed(Origin(0xfeed), 9, 42);
    let ours = Record {
        kind: RecordType::Request,
        id: framed.to_string(),
        timestamp_ns: 7,
        latency_ns: 0,
        payload: Bytes::from_static(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"),
    };
    assert_eq!(ours.message_id(), framed, "our ids read back as written");
    let m = ours.to_message().expect("a valid request");
    assert_eq!(
        (
            &m.id,
            m.id.conn().map(|c| c.conn),
            m.body_offset,
            m.first_ts_ns
        ),
        (&framed, Some(9), 48, 7)
    );
    assert_eq!(m.dir, Direction::ClientToServer);
    assert_eq!(m.header("host"), Some(&b"a"[..]));

    // GoReplay's 24 random hex digits are kept as written, the same for request and response.
    let theirs = |kind, payload: &'static [u8]| Record {
        kind,
        id: "a1b2c3d4e5f6a7b8c9d0e1f2".into(),
        timestamp_ns: 1,
        latency_ns: 5,
        payload: Bytes::from_static(payload),
    };
    let req = theirs(RecordType::Request, b"GET / HTTP/1.1\r\n\r\n");
    let resp = theirs(RecordType::Response, b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(req.message_id(), resp.message_id());
    let r = resp.to_message().expect("a valid response");
    assert_eq!((r.dir, r.latency_ns), (Direction::ServerToClient, Some(5)));

    // A body that disagrees with Content-Length, a body without framing, a bad head.
    for bad in [
        &b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc"[..],
        b"GET / HTTP/1.1\r\n\r\nextra",
        b"not http\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
    ] {
        let rec = Record {
            payload: Bytes::copy_from_slice(bad),
            ..ours.clone()
        };
        assert!(
            rec.to_message().is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let chunked = Record {
        payload: Bytes::from_static(
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        ..ours
    };
    assert!(chunked.to_message().is_ok());
}

#[test]
fn message_layout_has_no_separator() {
    let r = Record {
        kind: RecordType::Response,
        id: "8e4f0b2c4a5b6c7d8e9f0a1b".into(),
        timestamp_ns: 1_632_001_232_000_500_000,
        latency_ns: 500_000,
        payload: Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"),
    };
    let mut msg = Vec::new();
    encode_message(&r, &mut msg);
    assert_eq!(
        msg,
        b"2 8e4f0b2c4a5b6c7d8e9f0a1b 1632001232000500000 500000\nHTTP/1.1 200 OK\r\n\r\n"
    );
    // `encode` is the message plus the separator.
    let mut full = Vec::new();
    encode(&r, &mut full);
    assert_eq!(full, [&msg[..], SEPARATOR].concat());
}

#[test]
fn message_round_trip() {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let payloads: Vec<&[u8]> = vec![
        b"",
        b"\n",
        b"GET / HTTP/1.1\r\n\r\n",
        &all_bytes,
        SEP.as_bytes(),
        "body\n🐵🙈🙉\nmore\n1 abc 1 0\n".as_bytes(),
    ];
    for (i, p) in payloads.iter().enumerate() {
        for kind in [
            RecordType::Request,
            RecordType::Response,
            RecordType::ReplayedResponse,
        ] {
            let r = rec(kind, i as u64, 1_000 + i as u64, p);
            let mut msg = Vec::new();
            encode_message(&r, &mut msg);
            assert_eq!(parse_message(Bytes::from(msg)), Some(r));
        }
    }
}

#[test]
fn message_parsing_rejects_bad_meta() {
    assert_eq!(parse_message(Bytes::from_static(b"")), None);
    assert_eq!(
        parse_message(Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n")),
        None
    );
    assert_eq!(
        parse_message(Bytes::from_static(b"1 abc 1 0")),
        None,
        "no newline after meta"
    );
    assert_eq!(parse_message(Bytes::from_static(b"4 abc 1 0\nx")), None);
    assert_eq!(parse_message(Bytes::from_static(b"1 abc x 0\nx")), None);
    let long = [&[b'1'; 600][..], b"\nx"].concat();
    assert_eq!(parse_message(Bytes::from(long)), None);
    // Older GoReplay: no latency field; an empty payload is fine.
    let r = parse_message(Bytes::from_static(b"1 a1 5\n")).expect("valid");
    assert_eq!((r.id.as_str(), r.timestamp_ns, r.latency_ns), ("a1", 5, 0));
    assert!(r.payload.is_empty());
}

#[test]
fn the_envelope_survives_a_trip_through_a_file() {
    // Two agent runs (two hosts), two connections each, a request and its response on
    // each: written, read back, every message names its run, connection and position.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fleet.gor");
    let mut out =
        FileOutput::new(out_cfg(&path, None), ToWall::with_monotonic_offset(0)).expect("new");
    let mut sent = Vec::new();
    for (origin, conn, seq) in [(0xa1, 1, 1), (0xa1, 2, 1), (0xb2, 1, 1), (0xa1, 1, 2)] {
        let id = MessageId::framed(Origin(origin), conn, seq);
        for request in [true, false] {
            let raw: &[u8] = if request {
                b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
            } else {
                b"HTTP/1.1 204 No Content\r\n\r\n"
            };
            let mut m = message(0, 10 + seq, request, raw);
            m.id = id.clone();
            m.clock = Clock::Realtime;
            out.message(&m).expect("msg");
        }
        sent.push(id);
    }
    out.finish().expect("finish");
    let back: Vec<_> = read_all(path.to_str().expect("utf8"))
        .0
        .iter()
        .map(|r| r.to_message().expect("a valid message"))
        .collect();
    assert_eq!(back.len(), 8);
    for id in &sent {
        let same: Vec<_> = back.iter().filter(|m| &m.id == id).collect();
        assert_eq!(same.len(), 2, "{id}: its request and its response");
        assert_eq!(same[0].id.conn(), id.conn());
    }
    // Connection 1 of run a1 is one connection; run b2's connection 1 is another.
    let key = |o, c| {
        Some(ConnKey {
            origin: Origin(o),
            conn: c,
        })
    };
    assert_ne!(key(0xa1, 1), key(0xb2, 1));
    assert_eq!(
        back.iter().filter(|m| m.id.conn() == key(0xa1, 1)).count(),
        4
    );
}

/// Records of every file in `dir`, by file name.
fn files_in(dir: &Path) -> Vec<(String, Vec<Record>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let name = f.file_name().expect("name").to_string_lossy().into_owned();
            (name, read_all(f.to_str().expect("utf8")).0)
        })
        .collect()
}

#[test]
fn queue_limit_rotates_by_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = out_cfg(&dir.path().join("q.gor"), None);
    cfg.max_records = Some(2);
    let mut out = FileOutput::new(cfg, ToWall::with_monotonic_offset(0)).expect("new");
    for i in 0..5 {
        out.write_record(&rec(RecordType::Request, i, 1000 + i, b"x"));
    }
    out.finish().expect("finish");
    let files = files_in(dir.path());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["q.gor", "q_1.gor", "q_2.gor"]);
    let counts: Vec<usize> = files.iter().map(|(_, r)| r.len()).collect();
    assert_eq!(counts, [2, 2, 1]);
}

#[test]
fn append_adds_to_the_existing_file_and_never_rotates() {
    let dir = tempfile::tempdir().expect("tempdir");
    for gz in [false, true] {
        let path = dir.path().join(if gz { "a.gor.gz" } else { "a.gor" });
        let mut first = Vec::new();
        for round in 0..2u64 {
            // Stamped in the order written, as one file of a capture is.
            let mut cfg = out_cfg(&path, Some(10));
            cfg.append = true;
            cfg.max_records = Some(1);
            let mut out = FileOutput::new(cfg, ToWall::with_monotonic_offset(0)).expect("new");
            for i in 0..3 {
                let r = rec(
                    RecordType::Request,
                    round * 10 + i,
                    1000 + round * 10 + i,
                    b"body",
                );
                out.write_record(&r);
                first.push(r);
            }
            out.finish().expect("finish");
        }
        // Two runs, one file: the second run's records after the first's (a second gzip
        // member for `.gz`), despite the limits.
        let (back, damaged) = read_all(path.to_str().expect("utf8"));
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(back, first);
    }
    assert_eq!(fs::read_dir(dir.path()).expect("dir").count(), 2);
}

#[test]
fn max_size_limit_caps_all_files_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = {
        let mut b = Vec::new();
        encode(&rec(RecordType::Request, 1, 1000, b"0123456789"), &mut b);
        b.len() as u64
    };
    let mut cfg = out_cfg(&dir.path().join("m.gor"), None);
    cfg.max_records = Some(1);
    cfg.max_total = Some(one * 3 + one / 2);
    let mut out = FileOutput::new(cfg, ToWall::with_monotonic_offset(0)).expect("new");
    for i in 0..6 {
        out.write_record(&rec(RecordType::Request, i, 1000 + i, b"0123456789"));
    }
    out.finish().expect("finish");
    let total: usize = files_in(dir.path()).iter().map(|(_, r)| r.len()).sum();
    assert_eq!(total, 3);
    assert_eq!(out.stats().records_over_max_size, 3);
    assert_eq!(out.stats().records_written, 3);
}

#[test]
fn request_id_placeholder_keeps_a_request_with_its_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pattern = dir.path().join("%r-%t.gor");
    let by_id = dir.path().join("id-%r.gor");
    for (p, expect_files) in [(&pattern, 4), (&by_id, 2)] {
        let mut out =
            FileOutput::new(out_cfg(p, None), ToWall::with_monotonic_offset(0)).expect("new");
        // Interleaved: the first request's response comes after the second request.
        out.write_record(&rec(RecordType::Request, 1, 1000, b"q1"));
        out.write_record(&rec(RecordType::Request, 2, 1001, b"q2"));
        out.write_record(&rec(RecordType::Response, 1, 1002, b"r1"));
        out.write_record(&rec(RecordType::Response, 2, 1003, b"r2"));
        out.finish().expect("finish");
        let files: Vec<_> = files_in(dir.path())
            .into_iter()
            .filter(|(n, _)| n.starts_with(if p == &by_id { "id-" } else { "0" }))
            .collect();
        assert_eq!(files.len(), expect_files, "{files:?}");
        if p == &by_id {
            for (name, recs) in &files {
                assert_eq!(recs.len(), 2, "{name}: a request and its response");
                assert_eq!(name, &format!("id-{}.gor", recs[0].id));
            }
        } else {
            let (name, recs) = &files[0];
            assert_eq!(name, &format!("{}-1.gor", format_id(1)));
            assert_eq!(recs.len(), 1);
        }
    }
}

#[test]
fn nanosecond_and_instance_placeholders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pattern = dir.path().join("%i-%S.%NS.gor");
    let mut out =
        FileOutput::new(out_cfg(&pattern, None), ToWall::with_monotonic_offset(0)).expect("new");
    let t0 = 1_632_001_232_000_000_123u64;
    out.write_record(&rec(RecordType::Request, 1, t0, b"a"));
    out.write_record(&rec(RecordType::Request, 2, t0 + 1_000, b"b"));
    out.finish().expect("finish");
    let files = files_in(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let instance = files[0].0.split('-').next().expect("instance").to_string();
    assert_eq!(instance.len(), 8);
    assert_eq!(files[0].0, format!("{instance}-32.1123.gor"));
    assert_eq!(files[1].0, format!("{instance}-32.123.gor"));
}
