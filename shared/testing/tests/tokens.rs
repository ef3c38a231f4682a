//! Token verification: every malformed, forged, stale or inconsistent token is refused by the
//! [`Verifier`] and, through gRPC, answered UNAUTHENTICATED; well-formed tokens of each
//! algorithm family verify to the expected caller.
//!
//! The PEM keys under `fixtures/` are test-only keys generated for this file.

#![allow(clippy::unwrap_used, reason = "tests")]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{Value, json};
use tenantry_auth::{
    Algorithm, AuthConfig, Caller, OrgRole, PlatformRole, Signer, TokenError, Verifier,
};
use tenantry_testing::{Suite, TEST_JWT_SECRET, auth_config, authed, signer, super_admin_token};
use tonic::Code;
use tonic::client::Grpc;
use uuid::Uuid;

const ED25519_PRIVATE: &str = include_str!("../fixtures/test-only-ed25519-private.pem");
const ED25519_PUBLIC: &str = include_str!("../fixtures/test-only-ed25519-public.pem");
const ED25519_OTHER_PRIVATE: &str = include_str!("../fixtures/test-only-ed25519-other-private.pem");
const RSA_PRIVATE: &str = include_str!("../fixtures/test-only-rsa-private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/test-only-rsa-public.pem");

const ED_KID: &str = "test-ed";
const RSA_KID: &str = "test-rsa";
const OTHER_SECRET: &str = "another-secret-that-is-long-enough-0123456789";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hs256_verifier() -> Verifier {
    Verifier::new(&auth_config()).unwrap()
}

/// A key-pair configuration: verifies with `public` under `kid`, signs with `private` as
/// `signing_kid`.
fn keypair_config(
    algorithm: Algorithm,
    kid: &str,
    public: &str,
    signing_kid: &str,
    private: &str,
) -> AuthConfig {
    AuthConfig {
        algorithm,
        hs256_secret: None,
        public_keys: vec![(kid.to_owned(), public.to_owned())],
        signing_key: Some((
            signing_kid.to_owned(),
            SecretString::from(private.to_owned()),
        )),
        issuer: "tenantry".into(),
        audience: "tenantry".into(),
    }
}

fn eddsa_config() -> AuthConfig {
    keypair_config(
        Algorithm::EdDsa,
        ED_KID,
        ED25519_PUBLIC,
        ED_KID,
        ED25519_PRIVATE,
    )
}

fn rs256_config() -> AuthConfig {
    keypair_config(Algorithm::Rs256, RSA_KID, RSA_PUBLIC, RSA_KID, RSA_PRIVATE)
}

/// Claims of a super admin that are valid now, as JSON so that a test can break them.
fn valid_claims() -> Value {
    let now = now();
    json!({
        "sub": "test-operator",
        "role": "super_admin",
        "iss": "tenantry",
        "aud": "tenantry",
        "exp": now + 600,
        "nbf": now,
        "iat": now,
        "jti": Uuid::new_v4().to_string(),
    })
}

/// `valid_claims()` with `edit` applied.
fn claims_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = valid_claims();
    edit(claims.as_object_mut().unwrap());
    claims
}

/// Signs JSON claims with HS256 and `secret`.
fn hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Signs JSON claims with the test HS256 secret.
fn test_hs256(claims: &Value) -> String {
    hs256(claims, TEST_JWT_SECRET.as_bytes())
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

// ---- the bad tokens -------------------------------------------------------------------------

fn bad_signature_token() -> String {
    hs256(&valid_claims(), OTHER_SECRET.as_bytes())
}

fn expired_token() -> String {
    let now = now();
    test_hs256(&claims_with(|c| {
        c.insert("exp".into(), json!(now - 2 * 3600));
        c.insert("nbf".into(), json!(now - 3 * 3600));
        c.insert("iat".into(), json!(now - 3 * 3600));
    }))
}

fn not_yet_valid_token() -> String {
    let now = now();
    test_hs256(&claims_with(|c| {
        c.insert("nbf".into(), json!(now + 3600));
        c.insert("exp".into(), json!(now + 2 * 3600));
    }))
}

fn wrong_issuer_token() -> String {
    test_hs256(&claims_with(|c| {
        c.insert("iss".into(), json!("someone-else"));
    }))
}

fn wrong_audience_token() -> String {
    test_hs256(&claims_with(|c| {
        c.insert("aud".into(), json!("another-audience"));
    }))
}

fn missing_exp_token() -> String {
    test_hs256(&claims_with(|c| {
        c.remove("exp");
    }))
}

fn missing_nbf_token() -> String {
    test_hs256(&claims_with(|c| {
        c.remove("nbf");
    }))
}

fn alg_none_token() -> String {
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid_claims())
    )
}

/// HS256 with the RS256 public key's PEM bytes as the HMAC secret, naming the RSA `kid`.
fn algorithm_confusion_token() -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(RSA_KID.to_owned());
    jsonwebtoken::encode(
        &header,
        &valid_claims(),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .unwrap()
}

/// A well-signed EdDSA token whose `kid` the EdDSA verifier does not know.
fn unknown_kid_token() -> String {
    let config = keypair_config(
        Algorithm::EdDsa,
        ED_KID,
        ED25519_PUBLIC,
        "no-such-kid",
        ED25519_PRIVATE,
    );
    Signer::new(&config)
        .unwrap()
        .mint("test-operator", Some(PlatformRole::SuperAdmin), None, 600)
        .unwrap()
}

fn org_role_without_org_token() -> String {
    test_hs256(&claims_with(|c| {
        c.remove("role");
        c.insert("org_role".into(), json!("admin"));
    }))
}

fn unknown_role_token() -> String {
    test_hs256(&claims_with(|c| {
        c.insert("role".into(), json!("root"));
    }))
}

// ---- unit level: the Verifier ----------------------------------------------------------------

#[test]
fn the_unbroken_base_claims_verify() {
    // The control for every "broken claims" case below.
    let caller = hs256_verifier()
        .verify(&test_hs256(&valid_claims()))
        .unwrap();
    assert!(caller.is_super_admin());
    assert_eq!(caller.subject, "test-operator");
}

#[test]
fn bad_signature_is_refused() {
    let err = hs256_verifier().verify(&bad_signature_token()).unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn expired_token_is_refused() {
    let err = hs256_verifier().verify(&expired_token()).unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn not_yet_valid_token_is_refused() {
    let err = hs256_verifier().verify(&not_yet_valid_token()).unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn wrong_issuer_is_refused() {
    let err = hs256_verifier().verify(&wrong_issuer_token()).unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn wrong_audience_is_refused() {
    let err = hs256_verifier()
        .verify(&wrong_audience_token())
        .unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn missing_exp_is_refused() {
    let err = hs256_verifier().verify(&missing_exp_token()).unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn missing_nbf_is_refused() {
    let err = hs256_verifier().verify(&missing_nbf_token()).unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn alg_none_is_refused() {
    for verifier in [
        hs256_verifier(),
        Verifier::new(&eddsa_config()).unwrap(),
        Verifier::new(&rs256_config()).unwrap(),
    ] {
        let err = verifier.verify(&alg_none_token()).unwrap_err();
        assert!(matches!(err, TokenError::Malformed), "{err:?}");
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused_by_an_rs256_verifier() {
    let verifier = Verifier::new(&rs256_config()).unwrap();
    let err = verifier.verify(&algorithm_confusion_token()).unwrap_err();
    assert!(matches!(err, TokenError::Malformed), "{err:?}");
}

#[test]
fn eddsa_token_with_an_unknown_kid_is_refused() {
    let verifier = Verifier::new(&eddsa_config()).unwrap();
    let err = verifier.verify(&unknown_kid_token()).unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey), "{err:?}");

    // No kid at all is no better.
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = None;
    let token = jsonwebtoken::encode(
        &header,
        &valid_claims(),
        &EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let err = verifier.verify(&token).unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey), "{err:?}");
}

#[test]
fn eddsa_token_signed_by_another_key_under_a_known_kid_is_refused() {
    let config = keypair_config(
        Algorithm::EdDsa,
        ED_KID,
        ED25519_PUBLIC,
        ED_KID,
        ED25519_OTHER_PRIVATE,
    );
    let token = Signer::new(&config)
        .unwrap()
        .mint("test-operator", Some(PlatformRole::SuperAdmin), None, 600)
        .unwrap();
    let err = Verifier::new(&eddsa_config())
        .unwrap()
        .verify(&token)
        .unwrap_err();
    assert!(matches!(err, TokenError::Invalid(_)), "{err:?}");
}

#[test]
fn org_role_without_org_is_refused() {
    let err = hs256_verifier()
        .verify(&org_role_without_org_token())
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Claims("org_role without org")),
        "{err:?}"
    );
}

#[test]
fn unknown_role_is_refused() {
    let err = hs256_verifier().verify(&unknown_role_token()).unwrap_err();
    assert!(matches!(err, TokenError::Claims("unknown role")), "{err:?}");
}

#[test]
fn valid_hs256_token_verifies_to_the_expected_caller() {
    let tenant = Uuid::new_v4();
    let token = signer()
        .mint("user-1", None, Some((tenant, OrgRole::Manager)), 600)
        .unwrap();
    let caller = hs256_verifier().verify(&token).unwrap();
    let token_id = caller.token_id.clone();
    assert!(token_id.as_deref().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        caller,
        Caller {
            subject: "user-1".into(),
            platform_role: None,
            tenant_id: Some(tenant),
            org_role: Some(OrgRole::Manager),
            token_id,
            actor: None,
        }
    );
    assert!(caller.has_org_role(OrgRole::Teacher));
    assert!(!caller.has_org_role(OrgRole::Admin));
}

#[test]
fn eddsa_token_with_a_known_kid_verifies() {
    let token = Signer::new(&eddsa_config())
        .unwrap()
        .mint("test-service", Some(PlatformRole::Service), None, 600)
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(ED_KID));
    let caller = Verifier::new(&eddsa_config())
        .unwrap()
        .verify(&token)
        .unwrap();
    assert_eq!(caller.subject, "test-service");
    assert_eq!(caller.platform_role, Some(PlatformRole::Service));
    assert_eq!(caller.tenant_id, None);
    // The same token means nothing to the HS256 deployment.
    assert!(hs256_verifier().verify(&token).is_err());
}

#[test]
fn rs256_token_with_a_known_kid_verifies() {
    let tenant = Uuid::new_v4();
    let token = Signer::new(&rs256_config())
        .unwrap()
        .mint("user-2", None, Some((tenant, OrgRole::Admin)), 600)
        .unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(RSA_KID));
    let caller = Verifier::new(&rs256_config())
        .unwrap()
        .verify(&token)
        .unwrap();
    assert_eq!(caller.subject, "user-2");
    assert_eq!(caller.tenant_id, Some(tenant));
    assert_eq!(caller.org_role, Some(OrgRole::Admin));
    // An EdDSA verifier refuses it (algorithm family mismatch).
    assert!(
        Verifier::new(&eddsa_config())
            .unwrap()
            .verify(&token)
            .is_err()
    );
}

// ---- through gRPC --------------------------------------------------------------------------

/// Calls GetTenant (super admins only) on tenant-admin with `authorization: <value>`.
async fn get_tenant_code(channel: &tonic::transport::Channel, authorization: Option<&str>) -> Code {
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let path =
        http::uri::PathAndQuery::from_static("/tenantry.admin.v1.TenantAdminService/GetTenant");
    match grpc
        .unary(request, path, tonic_prost::ProstCodec::<(), ()>::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_token_is_unauthenticated_over_grpc() {
    let suite = Suite::start().await;
    let channel = suite.admin.channel().await;

    // Control: a valid super-admin token passes the auth layer.
    let code = get_tenant_code(&channel, Some(&format!("Bearer {}", super_admin_token()))).await;
    assert!(
        !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
        "valid token answered {code:?}"
    );
    // The same check through the library helper.
    let mut grpc = Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            authed((), &super_admin_token()),
            http::uri::PathAndQuery::from_static("/tenantry.admin.v1.TenantAdminService/GetTenant"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await
        .unwrap_err();
    assert!(!matches!(
        status.code(),
        Code::Unauthenticated | Code::PermissionDenied
    ));

    let eddsa_valid = Signer::new(&eddsa_config())
        .unwrap()
        .mint("test-operator", Some(PlatformRole::SuperAdmin), None, 600)
        .unwrap();
    let rs256_valid = Signer::new(&rs256_config())
        .unwrap()
        .mint("test-operator", Some(PlatformRole::SuperAdmin), None, 600)
        .unwrap();
    let bad_tokens = [
        ("bad signature", bad_signature_token()),
        ("expired", expired_token()),
        ("not yet valid", not_yet_valid_token()),
        ("wrong iss", wrong_issuer_token()),
        ("wrong aud", wrong_audience_token()),
        ("missing exp", missing_exp_token()),
        ("missing nbf", missing_nbf_token()),
        ("alg none", alg_none_token()),
        ("hs256 with rsa pem", algorithm_confusion_token()),
        ("eddsa unknown kid", unknown_kid_token()),
        ("eddsa on an hs256 deployment", eddsa_valid),
        ("rs256 on an hs256 deployment", rs256_valid),
        ("org_role without org", org_role_without_org_token()),
        ("unknown role", unknown_role_token()),
        ("garbage", "not-a-jwt".to_owned()),
        ("truncated", {
            let t = super_admin_token();
            t[..t.len() - 4].to_owned()
        }),
    ];
    let mut failures = Vec::new();
    for (label, token) in &bad_tokens {
        let code = get_tenant_code(&channel, Some(&format!("Bearer {token}"))).await;
        if code != Code::Unauthenticated {
            failures.push(format!("{label}: {code:?}"));
        }
    }
    // A valid token under another scheme, or an empty bearer, is no token.
    for value in [
        format!("Basic {}", super_admin_token()),
        super_admin_token(),
        "Bearer ".to_owned(),
    ] {
        let code = get_tenant_code(&channel, Some(&value)).await;
        if code != Code::Unauthenticated {
            failures.push(format!("authorization {value:?}: {code:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
