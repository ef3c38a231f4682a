//! AuthService (Login, SetPassword) through gRPC on a real Postgres.

#![expect(clippy::unwrap_used, reason = "tests")]

use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};
use tenantry_auth::{OrgRole, PlatformRole, Verifier};
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::auth_service_client::AuthServiceClient;
use tenantry_proto::admin::v1::login_request::Identifier;
use tenantry_proto::admin::v1::tenant_admin_service_client::TenantAdminServiceClient;
use tenantry_proto::common::v1 as common;
use tenantry_testing::{Suite, auth_config, authed, super_admin_token};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";

struct Fixture {
    s: Suite,
    tenant: String,
    user: Uuid,
    auth: AuthServiceClient<Channel>,
}

async fn exec(s: &Suite, sql: &str) {
    let mut conn = s.db.admin_conn().await;
    diesel::sql_query(sql).execute(&mut conn).await.unwrap();
}

/// A tenant `acme` with an active admin `ada@acme.test` / `ada` (a cost-4 hash, for speed).
async fn fixture() -> Fixture {
    let s = Suite::start().await;
    let mut admin = TenantAdminServiceClient::new(s.admin.channel().await);
    let t = admin
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "Acme".into(),
                slug: "acme".into(),
                email: "office@acme.test".into(),
                ..Default::default()
            },
            &super_admin_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let user = Uuid::new_v4();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    exec(
        &s,
        &format!(
            "INSERT INTO users (id, organization_id, email, username, password_hash, org_role, status) \
             VALUES ('{user}', '{}', 'Ada@Acme.test', 'ada', '{hash}', 'admin', 'active')",
            t.tenant_id
        ),
    )
    .await;
    let auth = AuthServiceClient::new(s.admin.channel().await);
    Fixture {
        s,
        tenant: t.tenant_id,
        user,
        auth,
    }
}

fn login(identifier: Identifier, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        tenant_slug: "acme".into(),
        identifier: Some(identifier),
        password: password.into(),
    }
}

fn email() -> Identifier {
    Identifier::Email("ada@acme.test".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_a_verifiable_token() {
    let mut f = fixture().await;
    let r = f
        .auth
        .login(login(email(), PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.expires_in, 3600);
    assert_eq!(r.user_id, f.user.to_string());
    assert_eq!(r.tenant_id, f.tenant);
    assert_eq!(r.org_role(), common::OrgRole::Admin);
    let caller = Verifier::new(&auth_config())
        .unwrap()
        .verify(&r.access_token)
        .unwrap();
    assert_eq!(caller.subject, f.user.to_string());
    assert_eq!(caller.tenant_id.unwrap().to_string(), f.tenant);
    assert_eq!(caller.org_role, Some(OrgRole::Admin));
    assert!(caller.platform_role.is_none());

    let by_name = f
        .auth
        .login(login(Identifier::Username("ADA".into()), PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name.user_id, f.user.to_string());
    assert_eq!(
        f.s.db
            .count("SELECT count(*) AS n FROM users WHERE last_login_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        f.s.db
            .count(
                "SELECT count(*) AS n FROM audit_events \
                 WHERE action = 'tenantry.admin.v1.AuthService/Login' \
                 AND metadata ->> 'outcome' = 'success'"
            )
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn login_rejects_missing_fields() {
    let mut f = fixture().await;
    let err = f
        .auth
        .login(pb::LoginRequest {
            tenant_slug: String::new(),
            identifier: None,
            password: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    // An empty slug is a platform admin's login, so only these two are missing.
    assert_eq!(fields, vec!["identifier", "password"]);
    // A platform admin signs in by e-mail: a username needs a tenant.
    let err = f
        .auth
        .login(pb::LoginRequest {
            tenant_slug: String::new(),
            ..login(Identifier::Username("ada".into()), PASSWORD)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "tenant_slug"
    );
    assert_eq!(
        f.s.db
            .count("SELECT count(*) AS n FROM users WHERE failed_login_attempts > 0")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_look_alike() {
    let mut f = fixture().await;
    let mut answers = Vec::new();
    for req in [
        pb::LoginRequest {
            tenant_slug: "no-such-tenant".into(),
            ..login(email(), PASSWORD)
        },
        login(Identifier::Email("nobody@acme.test".into()), PASSWORD),
        login(email(), "wrong password"),
    ] {
        let err = f.auth.login(req).await.unwrap_err();
        answers.push((err.code(), err.message().to_owned()));
    }
    assert!(
        answers
            .iter()
            .all(|a| *a == (Code::Unauthenticated, "invalid credentials".to_owned())),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_failures_lock_the_account() {
    let mut f = fixture().await;
    for _ in 0..5 {
        let err = f.auth.login(login(email(), "wrong")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let err = f.auth.login(login(email(), PASSWORD)).await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "locked: the right password fails"
    );
    assert_eq!(err.message(), "invalid credentials");
    assert_eq!(
        f.s.db
            .count(
                "SELECT count(*) AS n FROM users WHERE failed_login_attempts = 5 \
                 AND locked_until > now() + interval '29 minutes'"
            )
            .await,
        1
    );
    exec(
        &f.s,
        "UPDATE users SET locked_until = now() - interval '1 second'",
    )
    .await;
    f.auth.login(login(email(), PASSWORD)).await.unwrap();
    assert_eq!(
        f.s.db
            .count("SELECT count(*) AS n FROM users WHERE failed_login_attempts = 0 AND locked_until IS NULL")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suspended_tenants_and_inactive_users_cannot_log_in() {
    let mut f = fixture().await;
    exec(&f.s, "UPDATE users SET status = 'inactive'").await;
    let err = f.auth.login(login(email(), PASSWORD)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    exec(&f.s, "UPDATE users SET status = 'active'").await;
    exec(
        &f.s,
        "UPDATE organizations SET status = 'suspended', is_active = false, \
         suspension_reason = 'unpaid'",
    )
    .await;
    let err = f.auth.login(login(email(), PASSWORD)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "tenant is suspended: unpaid");
    // A wrong password still learns nothing.
    let err = f.auth.login(login(email(), "wrong")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_password_consumes_a_single_use_token() {
    let mut f = fixture().await;
    let token = "welcome-token-0123456789";
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    exec(
        &f.s,
        &format!(
            "INSERT INTO password_tokens (organization_id, user_id, token_hash, expires_at) \
             VALUES ('{}', '{}', decode('{hash}', 'hex'), now() + interval '1 day')",
            f.tenant, f.user
        ),
    )
    .await;
    exec(
        &f.s,
        "UPDATE users SET failed_login_attempts = 5, locked_until = now() + interval '1 hour'",
    )
    .await;

    let err = f
        .auth
        .set_password(pb::SetPasswordRequest {
            token: token.into(),
            new_password: "short".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "new_password"
    );
    let err = f
        .auth
        .set_password(pb::SetPasswordRequest {
            token: "unknown".into(),
            new_password: "a new password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let r = f
        .auth
        .set_password(pb::SetPasswordRequest {
            token: token.into(),
            new_password: "a new password".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.user_id, f.user.to_string());
    assert_eq!(r.tenant_id, f.tenant);
    assert_eq!(
        f.s.db
            .count("SELECT count(*) AS n FROM password_tokens WHERE used_at IS NOT NULL")
            .await,
        1
    );
    let err = f
        .auth
        .set_password(pb::SetPasswordRequest {
            token: token.into(),
            new_password: "another password".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // The lock is cleared and the new password works.
    f.auth
        .login(login(email(), "a new password"))
        .await
        .unwrap();
    let err = f.auth.login(login(email(), PASSWORD)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

const ROOT_PASSWORD: &str = "platform root password";

/// Adds a platform admin `root@platform.test` (a cost-4 hash) to the fixture; returns its id.
async fn platform_admin(f: &Fixture) -> Uuid {
    let id = Uuid::new_v4();
    let hash = bcrypt::hash(ROOT_PASSWORD, 4).unwrap();
    exec(
        &f.s,
        &format!(
            "INSERT INTO platform_admins (id, email, password_hash) \
             VALUES ('{id}', 'Root@Platform.test', '{hash}')"
        ),
    )
    .await;
    id
}

fn platform_login(email: &str, password: &str) -> pb::LoginRequest {
    pb::LoginRequest {
        tenant_slug: String::new(),
        identifier: Some(Identifier::Email(email.into())),
        password: password.into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_platform_admin_logs_in_with_an_empty_slug() {
    let mut f = fixture().await;
    let id = platform_admin(&f).await;
    let r = f
        .auth
        .login(platform_login("root@PLATFORM.test", ROOT_PASSWORD))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.token_type, "Bearer");
    assert_eq!(r.expires_in, 3600);
    assert_eq!(r.user_id, id.to_string());
    assert_eq!(r.tenant_id, "");
    assert_eq!(r.org_role(), common::OrgRole::Unspecified);
    let caller = Verifier::new(&auth_config())
        .unwrap()
        .verify(&r.access_token)
        .unwrap();
    assert_eq!(caller.subject, id.to_string());
    assert_eq!(caller.platform_role, Some(PlatformRole::SuperAdmin));
    assert!(caller.tenant_id.is_none());
    assert!(caller.org_role.is_none());

    // The token works where a super admin is needed.
    let mut admin = TenantAdminServiceClient::new(f.s.admin.channel().await);
    let list = admin
        .list_tenants(authed(pb::ListTenantsRequest::default(), &r.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.total_size, 1);
    assert_eq!(list.tenants[0].tenant_id, f.tenant);

    assert_eq!(
        f.s.db
            .count(
                "SELECT count(*) AS n FROM platform_admins \
                 WHERE last_login_at IS NOT NULL AND failed_login_attempts = 0"
            )
            .await,
        1
    );
    assert_eq!(
        f.s.db
            .count(&format!(
                "SELECT count(*) AS n FROM audit_events \
                 WHERE action = 'tenantry.admin.v1.AuthService/Login' \
                 AND organization_id IS NULL AND target_type = 'platform_admin' \
                 AND target_id = '{id}' AND metadata ->> 'outcome' = 'success'"
            ))
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_admin_failures_look_alike() {
    let mut f = fixture().await;
    platform_admin(&f).await;
    let mut answers = Vec::new();
    for req in [
        platform_login("root@platform.test", "wrong password"),
        platform_login("nobody@platform.test", ROOT_PASSWORD),
        // A tenant's user, right password, no tenant: not a platform admin.
        platform_login("ada@acme.test", PASSWORD),
    ] {
        let err = f.auth.login(req).await.unwrap_err();
        answers.push((err.code(), err.message().to_owned()));
    }
    assert!(
        answers
            .iter()
            .all(|a| *a == (Code::Unauthenticated, "invalid credentials".to_owned())),
        "{answers:?}"
    );
    // Only the existing platform admin's failure is counted (and audited, without a tenant).
    assert_eq!(
        f.s.db
            .count("SELECT count(*) AS n FROM platform_admins WHERE failed_login_attempts = 1")
            .await,
        1
    );
    assert_eq!(
        f.s.db
            .count("SELECT count(*) AS n FROM users WHERE failed_login_attempts > 0")
            .await,
        0
    );
    assert_eq!(
        f.s.db
            .count(
                "SELECT count(*) AS n FROM audit_events \
                 WHERE action = 'tenantry.admin.v1.AuthService/Login' \
                 AND organization_id IS NULL AND metadata ->> 'outcome' = 'failure'"
            )
            .await,
        1
    );
    // The tenant user still signs in to the tenant.
    f.auth.login(login(email(), PASSWORD)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn five_failures_lock_a_platform_admin() {
    let mut f = fixture().await;
    platform_admin(&f).await;
    for _ in 0..5 {
        let err = f
            .auth
            .login(platform_login("root@platform.test", "wrong"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let err = f
        .auth
        .login(platform_login("root@platform.test", ROOT_PASSWORD))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unauthenticated, "invalid credentials"),
        "locked: the right password fails"
    );
    assert_eq!(
        f.s.db
            .count(
                "SELECT count(*) AS n FROM platform_admins WHERE failed_login_attempts = 5 \
                 AND locked_until > now() + interval '29 minutes'"
            )
            .await,
        1
    );
    exec(
        &f.s,
        "UPDATE platform_admins SET locked_until = now() - interval '1 second'",
    )
    .await;
    f.auth
        .login(platform_login("root@platform.test", ROOT_PASSWORD))
        .await
        .unwrap();
    assert_eq!(
        f.s.db
            .count(
                "SELECT count(*) AS n FROM platform_admins \
                 WHERE failed_login_attempts = 0 AND locked_until IS NULL"
            )
            .await,
        1
    );
}
