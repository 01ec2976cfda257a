use super::*;

fn record() -> Record {
    Record {
        event: "request",
        time: "2026-12-07T03:00:00.000Z".into(),
        peer: "10.0.0.1".parse().unwrap(),
        sni: Some("test.com".into()),
        principal: Some("test.client".into()),
        method: "GET".into(),
        host: Some("test.com".into()),
        path: "/status/200".into(),
        status: 200,
        bytes: 12,
        duration_ms: 1.5,
        route: Some("0".into()),
        upstream: Some("http://127.0.0.1:8000".into()),
        decision: Some("allow"),
        policy: None,
    }
}

/// The `key=value` pairs of a text line, JSON strings decoded.
fn pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').unwrap();
        let (value, after) = if after.starts_with('"') {
            let mut de = serde_json::Deserializer::from_str(after).into_iter::<String>();
            let v = de.next().unwrap().unwrap();
            (v, &after[de.byte_offset()..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.push((key.to_owned(), value));
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    out
}

#[test]
fn text_lines_cannot_be_forged() {
    let plain = record().format(LogFormat::Text);
    assert_eq!(
        plain,
        "event=request time=2026-12-07T03:00:00.000Z peer=10.0.0.1 sni=test.com \
         principal=test.client method=GET host=test.com path=/status/200 status=200 bytes=12 \
         duration_ms=1.500 route=0 upstream=http://127.0.0.1:8000 decision=allow policy=-"
    );
    for hostile in [
        "x decision=allow",
        "x\" decision=\"allow",
        "a=b",
        "line\nbreak status=200",
        "",
        "-",
        "tab\there",
    ] {
        let mut r = record();
        r.host = Some(hostile.to_owned());
        r.path = hostile.to_owned();
        let line = r.format(LogFormat::Text);
        assert!(!line.contains('\n'), "{line}");
        let fields = pairs(&line);
        assert_eq!(fields.len(), 15, "{line}");
        assert_eq!(fields[6], ("host".into(), hostile.to_owned()), "{line}");
        assert_eq!(fields[7], ("path".into(), hostile.to_owned()), "{line}");
        assert_eq!(fields.iter().filter(|(k, _)| k == "decision").count(), 1);
    }
}

#[test]
fn json_lines_parse_back_to_the_values_logged() {
    for hostile in [
        "plain",
        "quote\" here",
        "back\\slash",
        "line\nbreak\r\t",
        "\u{1}\u{1f}\u{7f}",
        "ünï©ødé",
        "",
    ] {
        let mut r = record();
        r.path = hostile.to_owned();
        r.host = Some(hostile.to_owned());
        r.policy = None;
        let line = r.format(LogFormat::Json);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], hostile, "{line}");
        assert_eq!(v["host"], hostile, "{line}");
        assert_eq!(v["policy"], serde_json::Value::Null);
        assert_eq!(v["status"], 200);
        assert_eq!(v["duration_ms"], 1.5);
        assert!(line.contains(r#""duration_ms":1.500,"#), "{line}");
        assert_eq!(v["peer"], "10.0.0.1");
        assert_eq!(v.as_object().unwrap().len(), 15);
    }
}

#[test]
fn numbers_and_addresses_are_written_as_core_fmt_would() {
    for n in [0, 7, 10, 99, 1_000, 65_535, u64::MAX] {
        let mut out = String::new();
        push_u64(n, &mut out);
        assert_eq!(out, n.to_string());
    }
    for ms in [0.0, 0.0004, 0.0005, 1.5, 12.3456, 999.9995, 86_400_000.25] {
        let mut out = String::new();
        push_millis(ms, &mut out);
        assert_eq!(out, format!("{ms:.3}"), "{ms}");
    }
    for ip in [
        "0.0.0.0",
        "10.0.0.1",
        "255.255.255.255",
        "::1",
        "2001:db8::7",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        let mut out = String::new();
        push_ip(ip, &mut out);
        assert_eq!(out, ip.to_string());
    }
}

#[test]
fn timestamps_are_rfc3339_with_milliseconds() {
    let t = now_rfc3339();
    assert_eq!(t.len(), 24, "{t}");
    assert!(
        t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.',
        "{t}"
    );
    let parsed =
        time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((time::OffsetDateTime::now_utc() - parsed).abs() < time::Duration::seconds(5));
}

#[test]
fn lines_the_writer_cannot_take_are_counted() {
    /// A stdout that never accepts a byte; says when the writer is stuck in it.
    struct Stuck(std::sync::mpsc::Sender<()>);
    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(());
            loop {
                std::thread::park();
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (stuck_tx, stuck) = std::sync::mpsc::channel();
    let dropped = Counter::default();
    let (log, _) = AccessLog::with_queue(
        LogFormat::Json,
        Box::new(Stuck(stuck_tx)),
        dropped.clone(),
        4,
    )
    .unwrap();
    log.emit(&record());
    stuck
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the writer reached stdout");
    // The writer is blocked: four lines fit the queue, the other sixteen are dropped.
    for _ in 0..20 {
        log.emit(&record());
    }
    assert_eq!(dropped.get(), 16);
}
