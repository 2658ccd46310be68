//! RFC 9111 freshness and storability.

use super::*;

const NOW: u64 = 1_700_000_000;

fn at(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs((NOW as i64 + secs) as u64)
}

fn date(secs: i64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(status, None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

fn eval(headers: &[(&str, &str)]) -> Result<Freshness, NotStorable> {
    evaluate(
        &resp(200, headers),
        RequestFacts::default(),
        &FreshnessRules::default(),
        at(0),
    )
}

fn lifetime(headers: &[(&str, &str)]) -> Duration {
    eval(headers).unwrap().lifetime
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn explicit_lifetimes() {
    assert_eq!(lifetime(&[("cache-control", "max-age=60")]), S(60));
    assert_eq!(lifetime(&[("cache-control", "MaX-AgE=60")]), S(60));
    assert_eq!(lifetime(&[("cache-control", "max-age=003600")]), S(3600));
    assert_eq!(
        lifetime(&[("cache-control", "max-age=60, s-maxage=10")]),
        S(10)
    );
    assert_eq!(
        lifetime(&[("cache-control", "s-maxage=100, max-age=1")]),
        S(100)
    );
    assert_eq!(
        lifetime(&[("cache-control", "max-age=99999999999")]),
        S(i32::MAX as u64)
    );
    assert_eq!(lifetime(&[("cache-control", "max-age=-1")]), S(0));
    assert_eq!(lifetime(&[("cache-control", "max-age='60'")]), S(0));
    assert_eq!(lifetime(&[("cache-control", "max-age=60, no-cache")]), S(0));
}

#[test]
fn expires_is_relative_to_date() {
    let d = date(-100);
    let e = date(500);
    assert_eq!(lifetime(&[("date", &d), ("expires", &e)]), S(600));
    assert_eq!(lifetime(&[("date", &date(0)), ("expires", "0")]), S(0));
    let past = date(-10);
    assert_eq!(lifetime(&[("expires", &past)]), S(0));
    // Cache-Control wins over Expires.
    assert_eq!(
        lifetime(&[("expires", &past), ("cache-control", "max-age=30")]),
        S(30)
    );
}

#[test]
fn age_is_corrected() {
    let f = eval(&[
        ("cache-control", "max-age=100"),
        ("age", "30"),
        ("date", &date(0)),
    ])
    .unwrap();
    assert_eq!(f.initial_age, S(30));
    assert_eq!(f.fresh_until(), at(70));
    // A slow Date makes the response older than Age says.
    let f = eval(&[
        ("cache-control", "max-age=100"),
        ("age", "10"),
        ("date", &date(-50)),
    ])
    .unwrap();
    assert_eq!(f.initial_age, S(50));
    // Response delay counts too.
    let r = resp(200, &[("cache-control", "max-age=100"), ("age", "10")]);
    let facts = RequestFacts {
        request_time: Some(at(-5)),
        ..RequestFacts::default()
    };
    let f = evaluate(&r, facts, &FreshnessRules::default(), at(0)).unwrap();
    assert_eq!(f.initial_age, S(15));
}

#[test]
fn unusable_age_headers_make_the_response_stale() {
    for age in ["old", "-1", "1.5", "0, 0", "3600;x=1"] {
        let f = eval(&[("cache-control", "max-age=100"), ("age", age)]).unwrap();
        assert!(f.fresh_until() < at(0), "Age: {age}");
    }
    let r = resp(
        200,
        &[("cache-control", "max-age=100"), ("age", "0"), ("age", "0")],
    );
    let f = evaluate(
        &r,
        RequestFacts::default(),
        &FreshnessRules::default(),
        at(0),
    )
    .unwrap();
    assert!(f.fresh_until() < at(0));
}

#[test]
fn storage_is_refused_when_it_must_be() {
    assert_eq!(
        eval(&[("cache-control", "no-store, max-age=60")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        eval(&[("cache-control", "nO-StOrE")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        eval(&[("cache-control", "private, max-age=60")]),
        Err(NotStorable::Private)
    );
    assert_eq!(
        eval(&[("cache-control", "max-age=60"), ("vary", "Foo, *")]),
        Err(NotStorable::VaryStar)
    );
    assert_eq!(
        eval(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]),
        Err(NotStorable::SetCookie)
    );
    assert_eq!(eval(&[]), Err(NotStorable::NoFreshness));
    let r = resp(206, &[("cache-control", "max-age=60")]);
    assert_eq!(
        evaluate(
            &r,
            RequestFacts::default(),
            &FreshnessRules::default(),
            at(0)
        ),
        Err(NotStorable::Status)
    );
}

#[test]
fn authorization_needs_an_explicit_permission() {
    let auth = RequestFacts {
        authorization: true,
        ..RequestFacts::default()
    };
    let rules = FreshnessRules::default();
    let e = |cc: &str| evaluate(&resp(200, &[("cache-control", cc)]), auth, &rules, at(0));
    assert_eq!(e("max-age=60"), Err(NotStorable::Authorization));
    assert!(e("max-age=60, public").is_ok());
    assert!(e("s-maxage=60").is_ok());
    assert!(e("max-age=60, must-revalidate").is_ok());
}

#[test]
fn heuristic_and_default_freshness() {
    let lm = date(-1000);
    assert_eq!(
        lifetime(&[("last-modified", &lm), ("date", &date(0))]),
        S(100)
    );
    // 201 is not heuristically cacheable, unless public.
    let r = resp(201, &[("last-modified", &lm)]);
    assert_eq!(
        evaluate(
            &r,
            RequestFacts::default(),
            &FreshnessRules::default(),
            at(0)
        ),
        Err(NotStorable::NoFreshness)
    );
    let r = resp(599, &[("last-modified", &lm), ("cache-control", "public")]);
    assert!(evaluate(
        &r,
        RequestFacts::default(),
        &FreshnessRules::default(),
        at(0)
    )
    .is_ok());
    let rules = FreshnessRules {
        default_ttl: Some(S(5)),
        heuristic_fraction: 0.0,
        ..FreshnessRules::default()
    };
    let f = evaluate(
        &resp(200, &[("last-modified", &lm)]),
        RequestFacts::default(),
        &rules,
        at(0),
    )
    .unwrap();
    assert_eq!(f.lifetime, S(5));
}

#[test]
fn max_ttl_caps_and_statuses_filter() {
    let rules = FreshnessRules {
        max_ttl: Some(S(10)),
        statuses: Some(vec![200].into()),
        ..FreshnessRules::default()
    };
    let f = evaluate(
        &resp(200, &[("cache-control", "max-age=600")]),
        RequestFacts::default(),
        &rules,
        at(0),
    )
    .unwrap();
    assert_eq!(f.lifetime, S(10));
    let r = resp(404, &[("cache-control", "max-age=600")]);
    assert_eq!(
        evaluate(&r, RequestFacts::default(), &rules, at(0)),
        Err(NotStorable::Status)
    );
}

#[test]
fn stale_windows_come_from_the_origin_or_the_policy() {
    let f = eval(&[(
        "cache-control",
        "max-age=1, stale-while-revalidate=30, stale-if-error=60",
    )])
    .unwrap();
    assert_eq!((f.stale_while_revalidate, f.stale_if_error), (30, 60));
    let rules = FreshnessRules {
        stale_while_revalidate: S(7),
        stale_if_error: S(8),
        ..FreshnessRules::default()
    };
    let f = evaluate(
        &resp(200, &[("cache-control", "max-age=1")]),
        RequestFacts::default(),
        &rules,
        at(0),
    )
    .unwrap();
    assert_eq!((f.stale_while_revalidate, f.stale_if_error), (7, 8));
    for cc in [
        "max-age=1, must-revalidate",
        "s-maxage=1",
        "max-age=1, proxy-revalidate",
    ] {
        let f = evaluate(
            &resp(200, &[("cache-control", cc)]),
            RequestFacts::default(),
            &rules,
            at(0),
        )
        .unwrap();
        assert_eq!((f.stale_while_revalidate, f.stale_if_error), (0, 0), "{cc}");
    }
}

#[test]
fn surrogate_control_overrides_cache_control() {
    assert_eq!(
        lifetime(&[
            ("surrogate-control", "max-age=300"),
            ("cache-control", "max-age=10")
        ]),
        S(300)
    );
    assert_eq!(
        lifetime(&[
            ("surrogate-control", "max-age=300"),
            ("cache-control", "no-store")
        ]),
        S(300)
    );
    assert_eq!(
        eval(&[
            ("surrogate-control", "no-store"),
            ("cache-control", "max-age=10")
        ]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        lifetime(&[
            ("surrogate-control", "max-age=300;other"),
            ("cache-control", "max-age=10")
        ]),
        S(10)
    );
}

#[test]
fn must_understand_limits_storage_to_known_statuses() {
    let cc = [("cache-control", "max-age=60, must-understand, no-store")];
    assert!(evaluate(
        &resp(200, &cc),
        RequestFacts::default(),
        &FreshnessRules::default(),
        at(0)
    )
    .is_ok());
    assert_eq!(
        evaluate(
            &resp(599, &cc),
            RequestFacts::default(),
            &FreshnessRules::default(),
            at(0)
        ),
        Err(NotStorable::Status)
    );
}
