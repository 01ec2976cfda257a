//! The connection's one timer: which deadline it reports first (paused time).

use super::*;

const T: Timeouts = Timeouts {
    head: Duration::from_secs(10),
    idle: Duration::from_secs(60),
    stream_idle: Duration::from_secs(30),
};

/// Which deadline the one timer reports first, and after how many seconds (paused time);
/// the request in flight, if any, ends after `release` seconds.
async fn first(
    activity: &Arc<Activity>,
    request: Option<(bool, u64)>,
    expires_in: Option<u64>,
    closing: Option<u64>,
) -> (Expired, u64) {
    let start = Instant::now();
    let expires = expires_in.map(|s| start + Duration::from_secs(s));
    let closing = closing.map(|grace| (start, Duration::from_secs(grace)));
    let release = async {
        if let Some((body, release)) = request {
            let (guard, _) = activity.request_started();
            if body {
                guard.body_started();
            }
            tokio::time::sleep(Duration::from_secs(release)).await;
            drop(guard);
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        expired = activity.deadline(&T, expires, closing) => {
            (expired, start.elapsed().as_secs())
        }
        () = release => unreachable!("pending"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_one_timer_reports_the_earliest_deadline() {
    type Case = (
        &'static str,
        bool,
        Option<(bool, u64)>,
        Option<u64>,
        Option<u64>,
        Expired,
        u64,
    );
    let cases: &[Case] = &[
        ("idle HTTP/1", true, None, None, None, Expired::Idle, 60),
        ("idle HTTP/2", false, None, None, None, Expired::Idle, 60),
        (
            "certificate expires first",
            true,
            None,
            Some(5),
            None,
            Expired::Certificate,
            5,
        ),
        (
            "idle before the certificate",
            true,
            None,
            Some(3600),
            None,
            Expired::Idle,
            60,
        ),
        (
            "certificate already expired",
            false,
            None,
            Some(0),
            None,
            Expired::Certificate,
            0,
        ),
        (
            "HTTP/1 body stalls",
            true,
            Some((true, 100)),
            None,
            None,
            Expired::StreamIdle,
            30,
        ),
        (
            "idle counts from the last request",
            true,
            Some((false, 100)),
            None,
            None,
            Expired::Idle,
            160,
        ),
        (
            "certificate expires mid-request",
            true,
            Some((false, 100)),
            Some(50),
            None,
            Expired::Certificate,
            50,
        ),
        (
            "closing: the grace",
            true,
            None,
            Some(1),
            Some(10),
            Expired::Grace,
            10,
        ),
        (
            "closing: grace after the last request",
            false,
            Some((false, 100)),
            None,
            Some(10),
            Expired::Grace,
            110,
        ),
    ];
    for &(name, http1, request, expires_in, closing, want, after) in cases {
        let activity = Activity::new(http1);
        let got = first(&activity, request, expires_in, closing).await;
        assert_eq!(got, (want, after), "{name}");
    }
}
