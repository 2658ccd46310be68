//! Authentication: basic, API keys, JWT and any_of through the real proxy,
//! credentials stripped before the origin, and cached responses kept per
//! identity.

use std::path::Path;

use argon2::password_hash::{PasswordHasher, SaltString};
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use openssl::sha::sha256;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{get_with, raw_exchange, run_cli, Origin, Proxy, Reply};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hs256(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Upstream `web` to `origin`, then `auth:` and routes from `rest`.
fn config(origin: &Origin, rest: &str) -> String {
    format!(
        "upstreams:\n  web:\n    backends: [\"{}\"]\n{rest}",
        origin.address()
    )
}

async fn status(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> StatusCode {
    get(proxy, path, headers).await.status()
}

async fn get(proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    get_with(proxy.url(path), headers).await
}

#[tokio::test]
async fn basic_auth_with_argon2_and_bcrypt_users() {
    let origin = Origin::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("bob:{}\n", bcrypt::hash("hunter2", 4).unwrap()),
    )
    .unwrap();
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let alice = argon2::Argon2::default()
        .hash_password(b"s3cret", &salt)
        .unwrap()
        .to_string();
    let proxy = Proxy::start(config(
        &origin,
        &format!(
            "auth:\n  staff:\n    type: basic\n    realm: Staff area\n    users:\n      alice: \"{alice}\"\n    htpasswd_file: {}\nroutes:\n  - upstream: web\n  - upstream: web\n    match: {{ path_prefix: /admin }}\n    auth: {{ policy: staff, identity_header: X-Auth-User }}\n",
            htpasswd.display()
        ),
    ))
    .await;

    let ok = get(
        &proxy,
        "/admin/x",
        &[("authorization", &basic("alice", "s3cret"))],
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let seen = origin.last();
    assert_eq!(seen.header("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.header("authorization"),
        None,
        "credentials are stripped"
    );
    let ok = get(
        &proxy,
        "/admin/x",
        &[("authorization", &basic("bob", "hunter2"))],
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(origin.last().header("x-auth-user").as_deref(), Some("bob"));

    for bad in [
        Some(basic("alice", "wrong")),
        Some(basic("mallory", "s3cret")),
        Some("Basic not-base64!".to_string()),
        None,
    ] {
        let mut headers = vec![("x-auth-user", "alice")];
        if let Some(b) = &bad {
            headers.push(("authorization", b));
        }
        let denied = get(&proxy, "/admin/x", &headers).await;
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(
            denied.headers()["www-authenticate"],
            "Basic realm=\"Staff area\", charset=\"UTF-8\""
        );
    }
    // Path and method tricks meet the same policy.
    for target in [
        "//admin/x",
        "/%61dmin/x",
        "/public/../admin/x",
        "/admin%2Fx",
    ] {
        let raw = raw_exchange(
            proxy.addr,
            format!("HEAD {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            raw.starts_with("HTTP/1.1 401") || raw.starts_with("HTTP/1.1 400"),
            "{target}: {raw}"
        );
    }
    assert_eq!(origin.hits(), 2);
    // Unprotected routes do not ask.
    assert_eq!(status(&proxy, "/public", &[]).await, StatusCode::OK);
    // A spoofed identity header never reaches the origin on a protected route.
    let _ = get(
        &proxy,
        "/admin/x",
        &[
            ("authorization", &basic("bob", "hunter2")),
            ("x-auth-user", "alice"),
        ],
    )
    .await;
    assert_eq!(origin.last().header_all("x-auth-user"), ["bob"]);
}

fn api_keys() -> String {
    format!(
        "    keys:\n      - {{ name: acme, sha256: {} }}\n      - {{ name: globex, sha256: {} }}\n",
        hex(sha256(b"acme-secret-key-1")),
        hex(sha256(b"globex-secret-key-2"))
    )
}

#[tokio::test]
async fn api_keys_from_a_header_or_the_query() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(config(
        &origin,
        &format!(
            "auth:\n  partners:\n    type: api_key\n{keys}  by_query:\n    type: api_key\n    query: key\n{keys}routes:\n  - upstream: web\n    auth: {{ policy: partners, identity_header: X-Partner }}\n  - upstream: web\n    match: {{ path_prefix: /feed }}\n    auth: by_query\n",
            keys = api_keys()
        ),
    ))
    .await;
    let ok = get(&proxy, "/", &[("x-api-key", "globex-secret-key-2")]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(origin.last().header("x-partner").as_deref(), Some("globex"));
    assert_eq!(origin.last().header("x-api-key"), None);
    let denied = get(&proxy, "/", &[("x-api-key", "globex-secret-key-3")]).await;
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    assert!(denied.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("header=\"x-api-key\""));
    assert_eq!(status(&proxy, "/", &[]).await, StatusCode::UNAUTHORIZED);

    let ok = get(&proxy, "/feed?page=2&key=acme-secret-key-1", &[]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        origin.last().uri,
        "/feed?page=2",
        "the key is not forwarded"
    );
    assert_eq!(
        status(&proxy, "/feed?key=nope", &[]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(origin.hits(), 2);
}

/// Writes an RSA key pair; returns (private PEM, public key file).
fn rsa_pair(
    dir: &Path,
) -> (
    Vec<u8>,
    std::path::PathBuf,
    openssl::rsa::Rsa<openssl::pkey::Private>,
) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let public = dir.join("jwt.pub.pem");
    std::fs::write(&public, rsa.public_key_to_pem().unwrap()).unwrap();
    (rsa.private_key_to_pem().unwrap(), public, rsa)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn jwt_tokens_are_verified_with_every_key_source() {
    let origin = Origin::start("web").await;
    let dir = tempfile::tempdir().unwrap();
    let (private_pem, public_file, rsa) = rsa_pair(dir.path());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
            "n": b64url(&rsa.n().to_vec()), "e": b64url(&rsa.e().to_vec())}]})
        .to_string(),
    )
    .unwrap();
    let proxy = Proxy::start(config(
        &origin,
        &format!(
            "auth:\n  users:\n    type: jwt\n    secret: \"{SECRET}\"\n    issuer: https://id.test\n    audience: [api]\n    leeway: 5s\n    claims: {{ role: reader }}\n  rsa:\n    type: jwt\n    public_key_file: {}\n  jwks:\n    type: jwt\n    jwks_file: {}\nroutes:\n  - upstream: web\n    auth: {{ policy: users, identity_header: X-Sub }}\n  - upstream: web\n    match: {{ path_prefix: /rsa }}\n    auth: rsa\n  - upstream: web\n    match: {{ path_prefix: /jwks }}\n    auth: jwks\n",
            public_file.display(),
            jwks.display()
        ),
    ))
    .await;
    let claims = |overrides: serde_json::Value| {
        let mut c = json!({"sub": "u-42", "iss": "https://id.test", "aud": "api",
            "exp": now() + 600, "role": ["reader", "writer"]});
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let bearer = |t: String| format!("Bearer {t}");

    let ok = get(
        &proxy,
        "/",
        &[("authorization", &bearer(hs256(claims(json!({})), SECRET)))],
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(origin.last().header("x-sub").as_deref(), Some("u-42"));
    assert_eq!(origin.last().header("authorization"), None);

    let invalid = [
        ("expired", hs256(claims(json!({"exp": now() - 60})), SECRET)),
        (
            "not yet valid",
            hs256(claims(json!({"nbf": now() + 600})), SECRET),
        ),
        (
            "wrong audience",
            hs256(claims(json!({"aud": "other"})), SECRET),
        ),
        (
            "wrong issuer",
            hs256(claims(json!({"iss": "https://evil.test"})), SECRET),
        ),
        ("no exp", hs256(claims(json!({"exp": null})), SECRET)),
        (
            "forged",
            hs256(claims(json!({})), "another-secret-another-secret-xx"),
        ),
        ("garbage", "a.b.c".to_string()),
    ];
    for (what, token) in invalid {
        let denied = get(&proxy, "/", &[("authorization", &bearer(token))]).await;
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            denied.headers()["www-authenticate"],
            "Bearer realm=\"users\", error=\"invalid_token\"",
            "{what}"
        );
    }
    let missing = get(&proxy, "/", &[]).await;
    assert_eq!(
        missing.headers()["www-authenticate"],
        "Bearer realm=\"users\""
    );
    let wrong_role = get(
        &proxy,
        "/",
        &[(
            "authorization",
            &bearer(hs256(claims(json!({"role": "guest"})), SECRET)),
        )],
    )
    .await;
    assert_eq!(wrong_role.status(), StatusCode::FORBIDDEN);
    // RFC 6750 §3.1: the 403 says why.
    assert_eq!(
        wrong_role
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer realm=\"users\", error=\"insufficient_scope\"")
    );
    assert_eq!(origin.hits(), 1);

    // RS256 with a PEM public key, and with a JWKS chosen by kid.
    let rs256 = |kid: Option<&str>| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        encode(
            &header,
            &json!({"sub": "svc", "exp": now() + 600}),
            &EncodingKey::from_rsa_pem(&private_pem).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        status(&proxy, "/rsa", &[("authorization", &bearer(rs256(None)))]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(
            &proxy,
            "/jwks",
            &[("authorization", &bearer(rs256(Some("k1"))))]
        )
        .await,
        StatusCode::OK
    );
    // An HS256 token signed with the RSA public key (algorithm confusion).
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "svc", "exp": now() + 600}),
        &EncodingKey::from_secret(&std::fs::read(&public_file).unwrap()),
    )
    .unwrap();
    assert_eq!(
        status(&proxy, "/rsa", &[("authorization", &bearer(confused))]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn any_of_accepts_either_credential_and_offers_both_challenges() {
    let origin = Origin::start("web").await;
    let proxy = Proxy::start(config(
        &origin,
        &format!(
            "auth:\n  keys:\n    type: api_key\n{}  tokens:\n    type: jwt\n    secret: \"{SECRET}\"\n  either:\n    type: any_of\n    policies: [keys, tokens]\nroutes:\n  - upstream: web\n    auth: {{ policy: either, identity_header: X-Who }}\n",
            api_keys()
        ),
    ))
    .await;
    let token = hs256(json!({"sub": "u-1", "exp": now() + 600}), SECRET);
    assert_eq!(
        status(&proxy, "/", &[("x-api-key", "acme-secret-key-1")]).await,
        StatusCode::OK
    );
    assert_eq!(origin.last().header("x-who").as_deref(), Some("acme"));
    assert_eq!(
        status(
            &proxy,
            "/",
            &[("authorization", &format!("Bearer {token}"))]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(origin.last().header("x-who").as_deref(), Some("u-1"));
    let denied = get(&proxy, "/", &[]).await;
    assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = denied
        .headers()
        .get_all("www-authenticate")
        .iter()
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
}

#[tokio::test]
async fn cached_responses_stay_with_their_identity_unless_shared() {
    let origin = Origin::start("web").await;
    origin.on(
        "/",
        Reply::text("report").header("cache-control", "public, max-age=60"),
    );
    let body = |shared: bool| {
        config(
            &origin,
            &format!(
                "auth:\n  partners:\n    type: api_key\n{}routes:\n  - upstream: web\n    auth: partners\n    cache: {{ shared_for_authenticated: {shared} }}\n",
                api_keys()
            ),
        )
    };
    let proxy = Proxy::start(body(false)).await;
    let acme = [("x-api-key", "acme-secret-key-1")];
    let globex = [("x-api-key", "globex-secret-key-2")];
    assert_eq!(status(&proxy, "/r", &acme).await, StatusCode::OK);
    let hit = get(&proxy, "/r", &acme).await;
    assert!(hit.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert_eq!(origin.hits(), 1);
    let other = get(&proxy, "/r", &globex).await;
    assert!(other.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("fwd=miss"));
    assert_eq!(
        origin.hits(),
        2,
        "another identity never gets the first one's entry"
    );
    let anonymous = get(&proxy, "/r", &[]).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.text().await.unwrap(), "401 Unauthorized\n");
    drop(proxy);

    let shared = Proxy::start(body(true)).await;
    let before = origin.hits();
    assert_eq!(status(&shared, "/r", &acme).await, StatusCode::OK);
    let hit = get(&shared, "/r", &globex).await;
    assert!(hit.headers()["cache-status"]
        .to_str()
        .unwrap()
        .contains("hit"));
    assert_eq!(origin.hits(), before + 1);
    assert_eq!(
        status(&shared, "/r", &[]).await,
        StatusCode::UNAUTHORIZED,
        "auth runs before the cache"
    );
}

#[test]
fn auth_configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("palisade.yaml");
        std::fs::write(
            &path,
            format!("listeners: [{{name: http, address: \"127.0.0.1:8080\"}}]\nupstreams:\n  web:\n    backends: [127.0.0.1:8000]\n{text}"),
        )
        .unwrap();
        let out = run_cli(&["check", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = check("auth:\n  staff: {type: basic, users: {alice: plaintext}}\nroutes:\n  - {upstream: web, auth: staf}\n");
    assert!(
        out.contains("auth.staff.users.alice: unsupported password hash"),
        "{out}"
    );
    assert!(
        out.contains("routes[0].auth: auth policy `staf` is not defined"),
        "{out}"
    );
    assert!(out.contains("did you mean `staff`?"), "{out}");
    let out = check("auth:\n  t: {type: jwt, secret: short}\n  k: {type: api_key, keys: [{name: a, sha256: xyz}]}\n  e: {type: any_of, policies: [t, e]}\nroutes:\n  - {upstream: web, auth: t}\n");
    assert!(
        out.contains("auth.t.secret: an HMAC secret must be at least 32 bytes"),
        "{out}"
    );
    assert!(
        out.contains("auth.k.keys[0].sha256: must be the 64 hex digits"),
        "{out}"
    );
    assert!(
        out.contains("auth.e.policies[1]: `e` is an any_of policy"),
        "{out}"
    );
    // Key files are read once the file is otherwise valid.
    let out = check("auth:\n  t: {type: jwt, jwks_file: /nonexistent/jwks.json}\nroutes:\n  - {upstream: web, auth: t}\n");
    assert!(
        out.contains("auth.t.jwks_file: cannot read /nonexistent/jwks.json"),
        "{out}"
    );
    let out = check("auth:\n  t: {type: jwt, secret: \"0123456789abcdef0123456789abcdef\"}\n  o: {type: oauth}\nroutes:\n  - {upstream: web, auth: t}\n");
    assert!(
        out.contains("auth.o") && out.contains("unknown variant `oauth`"),
        "{out}"
    );
}

/// Runs `palisade args...` with `input` on standard input.
fn run_with_stdin(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(crate::harness::proxy::BIN)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn generated_hashes_and_keys_work_in_a_configuration() {
    let argon = run_with_stdin(&["hash-password"], "correct horse\n");
    assert!(argon.status.success());
    let argon = String::from_utf8(argon.stdout).unwrap().trim().to_string();
    assert!(argon.starts_with("$argon2id$"), "{argon}");
    let bcrypt_hash = run_with_stdin(&["hash-password", "--bcrypt"], "battery staple\n");
    let bcrypt_hash = String::from_utf8(bcrypt_hash.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(bcrypt_hash.starts_with("$2b$12$"), "{bcrypt_hash}");
    assert!(!run_with_stdin(&["hash-password"], "").status.success());

    let out = run_cli(&["generate-api-key", "ci"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text
        .lines()
        .next()
        .unwrap()
        .strip_prefix("key: ")
        .unwrap()
        .to_string();
    let entry = text
        .lines()
        .nth(1)
        .unwrap()
        .strip_prefix("entry: ")
        .unwrap()
        .to_string();

    let origin = Origin::start("web").await;
    let proxy = Proxy::start(config(
        &origin,
        &format!(
            "auth:\n  staff:\n    type: basic\n    users: {{ alice: \"{argon}\", bob: \"{bcrypt_hash}\" }}\n  ci:\n    type: api_key\n    keys: [{entry}]\nroutes:\n  - upstream: web\n    auth: staff\n  - upstream: web\n    match: {{ path_prefix: /ci }}\n    auth: ci\n"
        ),
    ))
    .await;
    assert_eq!(
        status(
            &proxy,
            "/",
            &[("authorization", &basic("alice", "correct horse"))]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(
            &proxy,
            "/",
            &[("authorization", &basic("bob", "battery staple"))]
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(&proxy, "/ci", &[("x-api-key", &key)]).await,
        StatusCode::OK
    );
}
