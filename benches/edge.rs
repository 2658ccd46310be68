//! Edge policy costs paid by every request: path normalisation, client
//! address filters and authentication checks; and by every TLS handshake:
//! the SNI certificate lookup (file certificates and ACME ones).
//!
//! `cargo bench --bench edge`

use std::hint::black_box;
use std::net::IpAddr;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use palisade::auth::api_key::ApiKeyAuth;
use palisade::auth::basic::BasicAuth;
use palisade::auth::jwt::JwtAuth;
use palisade::config::{IpFilterConfig, KeyPath};
use palisade::edge::path::normalize;
use palisade::edge::IpFilter;
use pingora::http::RequestHeader;

fn bench_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge/path");
    group.throughput(Throughput::Elements(1));
    for (name, path) in [
        ("already_normal", "/api/v2/users/42/orders"),
        (
            "dot_segments_and_slashes",
            "/api//v2/./users/../users/42/orders",
        ),
        ("percent_encoded", "/api/v2/%75sers/42/%6Frders%20list"),
    ] {
        group.bench_function(name, |b| b.iter(|| black_box(normalize(black_box(path)))));
    }
    // Back-end readings (`;` parameters, one more decoding, `\`, case):
    // what an ordinary path pays, and what one with capitals and a `;` does.
    for (name, path) in [
        ("readings_ordinary", "/api/v2/users/42/orders"),
        ("readings_capitals", "/Images/Logo.PNG"),
        ("readings_semicolon_and_escape", "/x/..;/%2561dmin/panel"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(palisade::edge::readings::readings(black_box(path))))
        });
    }
    group.finish();
}

fn bench_ip_filter(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge/ip_filter");
    group.throughput(Throughput::Elements(1));
    // An office allow list of 20 networks and a deny list of 100 addresses.
    let mut allow: Vec<String> = (0..20).map(|i| format!("10.{i}.0.0/16")).collect();
    allow.push("2001:db8::/32".into());
    let deny: Vec<String> = (0..100).map(|i| format!("10.0.{i}.66")).collect();
    let config: IpFilterConfig = serde_yaml::from_str(&format!(
        "{{allow: [{}], deny: [{}]}}",
        allow.join(", "),
        deny.join(", ")
    ))
    .expect("filter config");
    let filter = IpFilter::compile(&config);
    for (name, ip) in [
        ("allowed_v4", "10.19.3.4"),
        ("refused_v4", "192.0.2.1"),
        ("allowed_v6", "2001:db8::7"),
    ] {
        let ip: IpAddr = ip.parse().expect("address");
        group.bench_function(name, |b| {
            b.iter(|| black_box(filter.permits(Some(black_box(ip)))))
        });
    }
    group.finish();
}

fn request(header: (&str, &str)) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/v2/orders", None).expect("request");
    req.insert_header(header.0.to_string(), header.1)
        .expect("header");
    req
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bench_auth(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge/auth");
    group.throughput(Throughput::Elements(1));

    // API key: one SHA-256 and a map probe, among 1 000 keys.
    let keys: Vec<String> = (0..1000)
        .map(|i| {
            let digest = openssl::sha::sha256(format!("key-{i:04}-0123456789abcdef").as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("{{name: k{i}, sha256: {hex}}}")
        })
        .collect();
    let config = serde_yaml::from_str(&format!("keys: [{}]", keys.join(", "))).expect("keys");
    let api = ApiKeyAuth::compile("partners", &config);
    let req = request(("x-api-key", "key-0500-0123456789abcdef"));
    group.bench_function("api_key", |b| {
        b.iter(|| black_box(api.authenticate(black_box(&req))))
    });

    // JWT: HS256 and RS256 verification of a typical token.
    let secret = "0123456789abcdef0123456789abcdef";
    let claims = serde_json::json!({"sub": "user-42", "iss": "https://id.example.com",
        "aud": "api", "exp": now() + 3600, "role": ["reader"]});
    let config = serde_yaml::from_str(&format!(
        "{{secret: \"{secret}\", issuer: https://id.example.com, audience: api}}"
    ))
    .expect("jwt config");
    let hs = JwtAuth::compile("users", &config, &KeyPath::root()).expect("jwt");
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token");
    let req = request(("authorization", &format!("Bearer {token}")));
    group.bench_function("jwt_hs256", |b| {
        b.iter(|| black_box(hs.authenticate(black_box(&req))))
    });

    let rsa = openssl::rsa::Rsa::generate(2048).expect("rsa");
    let dir = tempfile::tempdir().expect("dir");
    let public = dir.path().join("jwt.pub.pem");
    std::fs::write(&public, rsa.public_key_to_pem().expect("pem")).expect("write");
    let config = serde_yaml::from_str(&format!("{{public_key_file: {}}}", public.display()))
        .expect("config");
    let rs = JwtAuth::compile("svc", &config, &KeyPath::root()).expect("jwt");
    let token = encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().expect("pem")).expect("key"),
    )
    .expect("token");
    let req = request(("authorization", &format!("Bearer {token}")));
    group.bench_function("jwt_rs256", |b| {
        b.iter(|| black_box(rs.authenticate(black_box(&req))))
    });

    // Basic: argon2 (default parameters) on first sight, then the memo.
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
    let hash = argon2::Argon2::default()
        .hash_password(b"correct horse", &salt)
        .expect("hash")
        .to_string();
    let config = serde_yaml::from_str(&format!("users: {{alice: \"{hash}\"}}")).expect("config");
    let basic = BasicAuth::compile("staff", &config, &KeyPath::root()).expect("basic");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let credentials = base64::engine::general_purpose::STANDARD.encode("alice:correct horse");
    let req = request(("authorization", &format!("Basic {credentials}")));
    group.bench_function("basic_remembered", |b| {
        b.iter(|| black_box(runtime.block_on(basic.authenticate(black_box(&req)))))
    });
    // A different wrong password each time: never remembered, always hashed.
    let mut n = 0u64;
    group.sample_size(10);
    group.bench_function("basic_argon2_verify", |b| {
        b.iter(|| {
            n += 1;
            let wrong =
                base64::engine::general_purpose::STANDARD.encode(format!("alice:wrong-{n}"));
            let req = request(("authorization", &format!("Basic {wrong}")));
            black_box(runtime.block_on(basic.authenticate(&req)))
        })
    });
    group.finish();
}

/// A self-signed ECDSA certificate for `name` and its key, as PEM files
/// in `dir`.
fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("key");
    let mut subject = X509NameBuilder::new().expect("name");
    subject
        .append_entry_by_nid(Nid::COMMONNAME, name)
        .expect("cn");
    let subject = subject.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&subject).expect("subject");
    b.set_issuer_name(&subject).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("time"))
        .expect("na");
    let san = SubjectAlternativeName::new()
        .dns(name)
        .build(&b.x509v3_context(None, None))
        .expect("san");
    b.append_extension(san).expect("ext");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    let file = name.replace('*', "_wildcard");
    let (cert, keyf) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&cert, b.build().to_pem().expect("pem")).expect("write");
    std::fs::write(&keyf, key.private_key_to_pem_pkcs8().expect("pem")).expect("write");
    (cert, keyf)
}

/// The certificate lookup of every handshake: a listener with 20 file
/// certificates (one a wildcard) and 20 ACME names.
fn bench_sni(c: &mut Criterion) {
    use palisade::config::ListenerTls;
    use palisade::tls::certified::CertifiedKey;
    use palisade::tls::store::CertStore;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for i in 0..19 {
        let (cert, key) = self_signed(dir.path(), &format!("site{i}.example.com"));
        files.push(format!(
            "{{cert: {}, key: {}}}",
            cert.display(),
            key.display()
        ));
    }
    let (cert, key) = self_signed(dir.path(), "*.files.example.com");
    files.push(format!(
        "{{cert: {}, key: {}}}",
        cert.display(),
        key.display()
    ));
    let acme_names: Vec<String> = (0..20).map(|i| format!("auto{i}.example.net")).collect();
    for name in &acme_names {
        let (cert, key) = self_signed(dir.path(), name);
        let chain = palisade::tls::load_certs(&cert).expect("certs");
        let key = palisade::tls::load_key(&key).expect("key");
        let ck = CertifiedKey::new(chain, key, name.clone()).expect("certified");
        palisade::tls::acme::issued().insert(name, std::sync::Arc::new(ck));
    }
    let tls: ListenerTls = serde_yaml::from_str(&format!(
        "{{certificates: [{}], acme: {{names: [{}], email: a@example.com, accept_terms_of_service: true}}}}",
        files.join(", "),
        acme_names.join(", ")
    ))
    .expect("tls config");
    let store = CertStore::compile(&tls, &KeyPath::root()).expect("store");
    let mut group = c.benchmark_group("tls/sni_lookup");
    group.throughput(Throughput::Elements(1));
    for (case, sni) in [
        ("file_exact", Some("site7.example.com")),
        ("file_wildcard", Some("www.files.example.com")),
        ("acme_exact", Some("auto13.example.net")),
        ("unknown_to_default", Some("nowhere.example.org")),
        ("no_sni", None),
    ] {
        assert!(store.lookup(sni).is_some());
        group.bench_function(case, |b| b.iter(|| black_box(store.lookup(black_box(sni)))));
    }
    group.finish();
}

criterion_group!(benches, bench_path, bench_ip_filter, bench_auth, bench_sni);
criterion_main!(benches);
