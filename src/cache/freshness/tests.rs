//! RFC 9111 freshness and storability.

use super::*;
use crate::test_support::response;

const NOW: u64 = 1_700_000_000;

fn at(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs((NOW as i64 + secs) as u64)
}

fn date(secs: i64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn eval(headers: &[(&str, &str)]) -> Result<Freshness, NotStorable> {
    evaluate(
        &response(200, headers),
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
    let r = response(200, &[("cache-control", "max-age=100"), ("age", "10")]);
    let facts = RequestFacts {
        request_time: Some(at(-5)),
        ..RequestFacts::default()
    };
    let f = evaluate(&r, facts, &FreshnessRules::default(), at(0)).unwrap();
    assert_eq!(f.initial_age, S(15));
}

#[test]
fn age_uses_the_first_member_of_a_list_and_ignores_an_invalid_value() {
    // RFC 9111 §5.1: a list (or repeated field lines) counts by its first
    // member; a value that is not a non-negative integer is ignored.
    let initial_age = |ages: &[&str]| {
        let mut headers = vec![("cache-control", "max-age=100")];
        headers.extend(ages.iter().map(|a| ("age", *a)));
        eval(&headers).unwrap().initial_age
    };
    assert_eq!(initial_age(&["0, 7200"]), S(0));
    assert_eq!(initial_age(&["30, 7200"]), S(30));
    assert_eq!(initial_age(&["30", "7200"]), S(30));
    assert_eq!(initial_age(&[" 45 "]), S(45));
    // Digits then something else: the digits count (never younger).
    assert_eq!(initial_age(&["7200.0"]), S(7200));
    assert_eq!(initial_age(&["7200;foo=bar"]), S(7200));
    assert_eq!(initial_age(&["1.5"]), S(1));
    for invalid in ["old", "-1", "", "x3600", ";3600"] {
        assert_eq!(initial_age(&[invalid]), S(0), "Age: {invalid:?}");
        let f = eval(&[("cache-control", "max-age=100"), ("age", invalid)]).unwrap();
        assert!(f.fresh_until() > at(0), "Age: {invalid:?} keeps it fresh");
    }
    assert_eq!(initial_age(&["99999999999"]), S(1 << 31));
}

#[test]
fn expires_in_every_http_date_form_is_understood() {
    let date_now = "Sun, 06 Nov 1994 08:49:37 GMT";
    let base = SystemTime::UNIX_EPOCH + S(784_111_777);
    for expires in [
        "Sun, 06 Nov 1994 08:59:37 GMT",
        "Sunday, 06-Nov-94 08:59:37 GMT",
        "Sun Nov  6 08:59:37 1994",
        "sun, 06 NOV 1994 08:59:37 gmt",
    ] {
        let f = evaluate(
            &response(200, &[("date", date_now), ("expires", expires)]),
            RequestFacts::default(),
            &FreshnessRules::default(),
            base,
        )
        .unwrap();
        assert_eq!(f.lifetime, S(600), "Expires: {expires}");
    }
}

fn with_rules(
    rules: &FreshnessRules,
    status: u16,
    headers: &[(&str, &str)],
) -> Result<Freshness, NotStorable> {
    evaluate(
        &response(status, headers),
        RequestFacts::default(),
        rules,
        at(0),
    )
}

#[test]
fn default_ttl_takes_precedence_over_the_last_modified_heuristic() {
    let old = date(-30 * 86_400);
    let recent = date(-60);
    let rules = FreshnessRules {
        default_ttl: Some(S(600)),
        ..FreshnessRules::default()
    };
    for lm in [&old, &recent] {
        let f = with_rules(&rules, 200, &[("last-modified", lm), ("date", &date(0))]).unwrap();
        assert_eq!(f.lifetime, S(600), "Last-Modified: {lm}");
    }
    // Without default_ttl the heuristic applies.
    let f = with_rules(
        &FreshnessRules::default(),
        200,
        &[("last-modified", &recent), ("date", &date(0))],
    )
    .unwrap();
    assert_eq!(f.lifetime, S(6));
    // Explicit freshness still wins.
    let f = with_rules(&rules, 200, &[("cache-control", "max-age=5")]).unwrap();
    assert_eq!(f.lifetime, S(5));
}

#[test]
fn ttl_by_status_applies_to_responses_without_explicit_freshness() {
    let rules = FreshnessRules {
        default_ttl: Some(S(600)),
        ttl_by_status: Box::new([(200, S(60)), (404, S(30)), (301, S(3600))]),
        ..FreshnessRules::default()
    };
    assert_eq!(with_rules(&rules, 200, &[]).unwrap().lifetime, S(60));
    assert_eq!(with_rules(&rules, 404, &[]).unwrap().lifetime, S(30));
    assert_eq!(with_rules(&rules, 301, &[]).unwrap().lifetime, S(3600));
    assert_eq!(with_rules(&rules, 410, &[]).unwrap().lifetime, S(600));
    let lm = date(-86_400);
    assert_eq!(
        with_rules(&rules, 200, &[("last-modified", &lm)])
            .unwrap()
            .lifetime,
        S(60)
    );
    assert_eq!(
        with_rules(&rules, 404, &[("cache-control", "max-age=5")])
            .unwrap()
            .lifetime,
        S(5)
    );
}

#[test]
fn ignoring_origin_freshness_uses_the_policy_ttls_but_keeps_no_store_and_private() {
    let rules = FreshnessRules {
        default_ttl: Some(S(600)),
        ignore_origin: IgnoreOrigin {
            freshness: true,
            ..IgnoreOrigin::default()
        },
        ..FreshnessRules::default()
    };
    for cc in [
        "max-age=5",
        "no-cache",
        "max-age=0, must-revalidate",
        "s-maxage=1",
    ] {
        let f = with_rules(&rules, 200, &[("cache-control", cc)]).unwrap();
        assert_eq!(f.lifetime, S(600), "{cc}");
        assert!(!must_revalidate(
            &response(200, &[("cache-control", cc)]),
            &rules
        ));
    }
    let f = with_rules(&rules, 200, &[("expires", &date(5))]).unwrap();
    assert_eq!(f.lifetime, S(600));
    assert_eq!(
        with_rules(&rules, 200, &[("cache-control", "no-store")]),
        Err(NotStorable::NoStore)
    );
    assert_eq!(
        with_rules(&rules, 200, &[("cache-control", "private")]),
        Err(NotStorable::Private)
    );
    let all = FreshnessRules {
        ignore_origin: IgnoreOrigin {
            freshness: true,
            no_store: true,
            private: true,
        },
        ..rules
    };
    for cc in ["no-store", "private", "private, no-store, max-age=0"] {
        assert_eq!(
            with_rules(&all, 200, &[("cache-control", cc)])
                .unwrap()
                .lifetime,
            S(600),
            "{cc}"
        );
    }
}

#[test]
fn cdn_cache_control_takes_precedence_over_cache_control() {
    let rules = FreshnessRules::default();
    let f = with_rules(
        &rules,
        200,
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
        ],
    )
    .unwrap();
    assert_eq!(f.lifetime, S(600));
    assert_eq!(
        with_rules(
            &rules,
            200,
            &[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", "private")
            ]
        ),
        Err(NotStorable::Private)
    );
    assert_eq!(
        with_rules(
            &rules,
            200,
            &[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", "no-store")
            ]
        ),
        Err(NotStorable::NoStore)
    );
    let no_cache = [
        ("cache-control", "max-age=600"),
        ("cdn-cache-control", "no-cache"),
    ];
    assert_eq!(with_rules(&rules, 200, &no_cache).unwrap().lifetime, S(0));
    assert!(must_revalidate(&response(200, &no_cache), &rules));
    // Expires is ignored when a targeted field governs.
    let f = with_rules(
        &rules,
        200,
        &[
            ("expires", &date(600)),
            ("cdn-cache-control", "must-revalidate"),
        ],
    );
    assert_eq!(f, Err(NotStorable::NoFreshness));
    // An empty targeted field is as good as absent.
    let f = with_rules(
        &rules,
        200,
        &[("cache-control", "max-age=60"), ("cdn-cache-control", "")],
    )
    .unwrap();
    assert_eq!(f.lifetime, S(60));
    // Turned off, Cache-Control governs.
    let off = FreshnessRules {
        cdn_cache_control: false,
        ..FreshnessRules::default()
    };
    assert_eq!(
        with_rules(
            &off,
            200,
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600")
            ]
        ),
        Err(NotStorable::NoStore)
    );
}

#[test]
fn the_policys_own_targeted_field_is_the_most_specific() {
    let rules = FreshnessRules {
        targeted_field: Some(http::HeaderName::from_static("palisade-cache-control")),
        ..FreshnessRules::default()
    };
    let f = with_rules(
        &rules,
        200,
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
            ("palisade-cache-control", "max-age=30"),
        ],
    )
    .unwrap();
    assert_eq!(f.lifetime, S(30));
    assert_eq!(
        with_rules(
            &rules,
            200,
            &[
                ("cdn-cache-control", "max-age=600"),
                ("palisade-cache-control", "no-store")
            ]
        ),
        Err(NotStorable::NoStore)
    );
    // Without the own field, CDN-Cache-Control governs.
    let f = with_rules(&rules, 200, &[("cdn-cache-control", "max-age=600")]).unwrap();
    assert_eq!(f.lifetime, S(600));
    // A targeted field also outranks Surrogate-Control.
    let f = with_rules(
        &rules,
        200,
        &[
            ("surrogate-control", "max-age=5"),
            ("palisade-cache-control", "max-age=30"),
        ],
    )
    .unwrap();
    assert_eq!(f.lifetime, S(30));
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
    let r = response(206, &[("cache-control", "max-age=60")]);
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
    let e = |cc: &str| {
        evaluate(
            &response(200, &[("cache-control", cc)]),
            auth,
            &rules,
            at(0),
        )
    };
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
    let r = response(201, &[("last-modified", &lm)]);
    assert_eq!(
        evaluate(
            &r,
            RequestFacts::default(),
            &FreshnessRules::default(),
            at(0)
        ),
        Err(NotStorable::NoFreshness)
    );
    let r = response(599, &[("last-modified", &lm), ("cache-control", "public")]);
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
        &response(200, &[("last-modified", &lm)]),
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
        &response(200, &[("cache-control", "max-age=600")]),
        RequestFacts::default(),
        &rules,
        at(0),
    )
    .unwrap();
    assert_eq!(f.lifetime, S(10));
    let r = response(404, &[("cache-control", "max-age=600")]);
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
        &response(200, &[("cache-control", "max-age=1")]),
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
            &response(200, &[("cache-control", cc)]),
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
        &response(200, &cc),
        RequestFacts::default(),
        &FreshnessRules::default(),
        at(0)
    )
    .is_ok());
    assert_eq!(
        evaluate(
            &response(599, &cc),
            RequestFacts::default(),
            &FreshnessRules::default(),
            at(0)
        ),
        Err(NotStorable::Status)
    );
}
