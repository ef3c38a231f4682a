//! Invitations through real gRPC on a real Postgres: create, list, revoke, resend, accept,
//! decline, and `max_users` under concurrent acceptances.

#![expect(clippy::unwrap_used, reason = "tests")]

use base64::Engine as _;
use diesel::sql_types::{Bytea, Integer, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use sha2::{Digest as _, Sha256};
use tenantry_auth::OrgRole;
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::organization_service_client::OrganizationServiceClient;
use tenantry_proto::common::v1 as common;
use tenantry_testing::{Suite, TestDb, authed, member_token};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

type Client = OrganizationServiceClient<Channel>;

async fn client(suite: &Suite) -> Client {
    OrganizationServiceClient::new(suite.admin.channel().await)
}

/// Inserts a tenant; a suspended one gets the reason `payment overdue`.
async fn tenant(db: &TestDb, status: &str, max_users: i32) -> Uuid {
    let id = Uuid::new_v4();
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "INSERT INTO organizations (id, name, slug, status, max_users, is_active, \
         suspension_reason) \
         VALUES ($1, $2, $3, $4, $5, $4 <> 'suspended', \
                 CASE WHEN $4 = 'suspended' THEN 'payment overdue' END)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>("Invite Org")
    .bind::<Text, _>(format!("org-{}", id.simple()))
    .bind::<Text, _>(status)
    .bind::<Integer, _>(max_users)
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

/// Inserts an active user and counts it in `current_users`.
async fn user(db: &TestDb, tenant: Uuid, name: &str, role: &str) -> Uuid {
    let id = Uuid::new_v4();
    let hash = bcrypt::hash("password-123", 4).unwrap();
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "INSERT INTO users (id, organization_id, email, username, password_hash, org_role, status) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active')",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(format!("{name}@example.test"))
    .bind::<Text, _>(name)
    .bind::<Text, _>(hash)
    .bind::<Text, _>(role)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("UPDATE organizations SET current_users = current_users + 1 WHERE id = $1")
        .bind::<SqlUuid, _>(tenant)
        .execute(&mut conn)
        .await
        .unwrap();
    id
}

async fn sql(db: &TestDb, statement: &str) {
    let mut conn = db.admin_conn().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Inserts a pending invitation with a known token; returns the token.
async fn invitation(db: &TestDb, tenant: Uuid, email: &str) -> String {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes());
    let hash = Sha256::digest(token.as_bytes()).to_vec();
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "INSERT INTO invitations (organization_id, email, org_role, token_hash, expires_at) \
         VALUES ($1, $2, 'member', $3, now() + interval '7 days')",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(email)
    .bind::<Bytea, _>(hash)
    .execute(&mut conn)
    .await
    .unwrap();
    token
}

fn bad_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn invite(email: &str, role: common::OrgRole) -> pb::CreateInvitationRequest {
    pb::CreateInvitationRequest {
        email: email.into(),
        org_role: role as i32,
        message: "Welcome aboard".into(),
        ..Default::default()
    }
}

fn accept(token: &str, username: &str) -> pb::AcceptInvitationRequest {
    pb::AcceptInvitationRequest {
        token: token.into(),
        username: username.into(),
        password: "a long enough password".into(),
        first_name: "New".into(),
        last_name: "Member".into(),
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.count(sql).await
}

#[tokio::test(flavor = "multi_thread")]
async fn create_invitation_stores_a_hash_and_queues_an_email() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    user(&suite.db, own, "alice", "admin").await;
    let manager = member_token(own, OrgRole::Manager);

    let out = c
        .create_invitation(authed(
            invite(" Teacher@School.TEST ", common::OrgRole::Teacher),
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    let inv = out.invitation.unwrap();
    assert_eq!(inv.email, "teacher@school.test");
    assert_eq!(inv.org_role, common::OrgRole::Teacher as i32);
    assert_eq!(inv.status, pb::InvitationStatus::Pending as i32);
    assert_eq!(inv.message, "Welcome aboard");
    let days =
        (inv.expires_at.unwrap().seconds - inv.created_at.unwrap().seconds) as f64 / 86_400.0;
    assert!((days - 7.0).abs() < 0.01, "{days}");
    assert_eq!(out.invitation_token.len(), 43);
    let hash = hex(&Sha256::digest(out.invitation_token.as_bytes()));
    assert_eq!(
        count(
            &suite.db,
            &format!(
                "SELECT count(*) AS n FROM invitations WHERE token_hash = '\\x{hash}' \
                 AND organization_id = '{own}'"
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &suite.db,
            &format!(
                "SELECT count(*) AS n FROM email_outbox WHERE organization_id = '{own}' \
                 AND kind = 'invitation' AND to_address = 'teacher@school.test' \
                 AND position('{}' in body_text) = 0",
                out.invitation_token
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &suite.db,
            &format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{own}' \
                 AND action LIKE '%/CreateInvitation'"
            )
        )
        .await,
        1
    );

    // One pending invitation per address; members cannot be invited again.
    let err = c
        .create_invitation(authed(
            invite("teacher@school.test", common::OrgRole::Member),
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = c
        .create_invitation(authed(
            invite("alice@example.test", common::OrgRole::Member),
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Bad input writes nothing.
    let mut bad = invite("not-an-email", common::OrgRole::Member);
    bad.expires_in_days = Some(31);
    let err = c
        .create_invitation(authed(bad, &manager))
        .await
        .unwrap_err();
    let fields = bad_fields(&err);
    assert!(fields.contains(&"email".to_owned()) && fields.contains(&"expires_in_days".to_owned()));
    assert_eq!(
        count(&suite.db, "SELECT count(*) AS n FROM invitations").await,
        1
    );

    // Roles: a teacher may not invite; a manager may not invite an admin; an admin may.
    let err = c
        .create_invitation(authed(
            invite("x@school.test", common::OrgRole::Member),
            &member_token(own, OrgRole::Teacher),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .create_invitation(authed(
            invite("boss@school.test", common::OrgRole::Admin),
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    c.create_invitation(authed(
        invite("boss@school.test", common::OrgRole::Admin),
        &member_token(own, OrgRole::Admin),
    ))
    .await
    .unwrap();

    // Another tenant answers NOT_FOUND like a random id.
    let mut foreign = invite("y@school.test", common::OrgRole::Member);
    foreign.tenant_id = other.to_string();
    let a = c
        .create_invitation(authed(foreign.clone(), &manager))
        .await
        .unwrap_err();
    foreign.tenant_id = Uuid::new_v4().to_string();
    let b = c
        .create_invitation(authed(foreign, &manager))
        .await
        .unwrap_err();
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    assert_eq!(a.code(), Code::NotFound);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn invitations_and_members_share_max_users() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 3).await;
    user(&suite.db, own, "alice", "admin").await;
    let admin = member_token(own, OrgRole::Admin);
    for email in ["a@x.test", "b@x.test"] {
        c.create_invitation(authed(invite(email, common::OrgRole::Member), &admin))
            .await
            .unwrap();
    }
    // 1 member + 2 pending = 3 = max_users.
    let err = c
        .create_invitation(authed(invite("c@x.test", common::OrgRole::Member), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        count(&suite.db, "SELECT count(*) AS n FROM invitations").await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_revoke_and_resend() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let other = tenant(&suite.db, "active", 10).await;
    let manager = member_token(own, OrgRole::Manager);
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for email in ["one@x.test", "two@x.test", "three@x.test"] {
        let out = c
            .create_invitation(authed(invite(email, common::OrgRole::Member), &manager))
            .await
            .unwrap()
            .into_inner();
        ids.push(out.invitation.unwrap().invitation_id);
        tokens.push(out.invitation_token);
    }
    let foreign_token = invitation(&suite.db, other, "z@x.test").await;
    let foreign_id = Uuid::new_v4();
    sql(
        &suite.db,
        &format!("UPDATE invitations SET id = '{foreign_id}' WHERE organization_id = '{other}'"),
    )
    .await;

    // Newest first, paged.
    let page = c
        .list_invitations(authed(
            pb::ListInvitationsRequest {
                page_size: 2,
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.total_size, 3);
    assert_eq!(page.invitations[0].email, "three@x.test");
    let rest = c
        .list_invitations(authed(
            pb::ListInvitationsRequest {
                page_size: 2,
                page_token: page.next_page_token,
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.invitations.len(), 1);
    assert_eq!(rest.invitations[0].email, "one@x.test");
    assert!(rest.next_page_token.is_empty());

    // Revoke: the token stops working; revoking again is refused.
    let revoked = c
        .revoke_invitation(authed(
            pb::RevokeInvitationRequest {
                invitation_id: ids[0].clone(),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner()
        .invitation
        .unwrap();
    assert_eq!(revoked.status, pb::InvitationStatus::Revoked as i32);
    assert!(revoked.revoked_at.is_some());
    let err = c
        .accept_invitation(accept(&tokens[0], "someone"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = c
        .revoke_invitation(authed(
            pb::RevokeInvitationRequest {
                invitation_id: ids[0].clone(),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let revoked_only = c
        .list_invitations(authed(
            pb::ListInvitationsRequest {
                status: pb::InvitationStatus::Revoked as i32,
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked_only.total_size, 1);

    // Resend an expired invitation: new token, new expiry; the old token is unknown.
    sql(
        &suite.db,
        &format!(
            "UPDATE invitations SET expires_at = now() - interval '1 day' WHERE id = '{}'",
            ids[1]
        ),
    )
    .await;
    let err = c
        .accept_invitation(accept(&tokens[1], "late"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "expired token");
    let resent = c
        .resend_invitation(authed(
            pb::ResendInvitationRequest {
                invitation_id: ids[1].clone(),
                expires_in_days: Some(2),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(resent.invitation_token, tokens[1]);
    assert_eq!(
        resent.invitation.unwrap().status,
        pb::InvitationStatus::Pending as i32
    );
    let err = c
        .accept_invitation(accept(&tokens[1], "late"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    c.accept_invitation(accept(&resent.invitation_token, "late"))
        .await
        .unwrap();
    let err = c
        .resend_invitation(authed(
            pb::ResendInvitationRequest {
                invitation_id: ids[1].clone(),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "accepted");

    // Bad ids, wrong role, another tenant's invitation.
    let err = c
        .revoke_invitation(authed(pb::RevokeInvitationRequest::default(), &manager))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["invitation_id".to_owned()]);
    let err = c
        .resend_invitation(authed(
            pb::ResendInvitationRequest {
                invitation_id: ids[2].clone(),
                expires_in_days: Some(0),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["expires_in_days".to_owned()]);
    let err = c
        .list_invitations(authed(
            pb::ListInvitationsRequest::default(),
            &member_token(own, OrgRole::Teacher),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let a = c
        .revoke_invitation(authed(
            pb::RevokeInvitationRequest {
                invitation_id: foreign_id.to_string(),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap_err();
    let b = c
        .revoke_invitation(authed(
            pb::RevokeInvitationRequest {
                invitation_id: Uuid::new_v4().to_string(),
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    assert_eq!(a.code(), Code::NotFound);
    // The foreign invitation is untouched.
    c.decline_invitation(pb::DeclineInvitationRequest {
        token: foreign_token,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_creates_a_member_once() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    user(&suite.db, own, "alice", "admin").await;
    let admin = member_token(own, OrgRole::Admin);
    let out = c
        .create_invitation(authed(
            invite("new@x.test", common::OrgRole::Manager),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let token = out.invitation_token;

    // Bad input first: nothing is written.
    let mut bad = accept(&token, "ab");
    bad.password = "short".into();
    let err = c.accept_invitation(bad).await.unwrap_err();
    let fields = bad_fields(&err);
    assert!(fields.contains(&"username".to_owned()) && fields.contains(&"password".to_owned()));
    let err = c.accept_invitation(accept("", "newbie")).await.unwrap_err();
    assert_eq!(bad_fields(&err), vec!["token".to_owned()]);
    let err = c
        .accept_invitation(accept("no-such-token", "newbie"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The username is unique in the organization.
    let err = c
        .accept_invitation(accept(&token, "ALICE"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    let joined = c
        .accept_invitation(accept(&token, "newbie"))
        .await
        .unwrap()
        .into_inner();
    let member = joined.user.unwrap();
    assert_eq!(member.email, "new@x.test");
    assert_eq!(member.org_role, common::OrgRole::Manager as i32);
    assert_eq!(joined.tenant_id, own.to_string());
    assert_eq!(joined.token_type, "Bearer");
    assert_eq!(
        count(
            &suite.db,
            &format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{own}' AND current_users = 2"
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &suite.db,
            &format!(
                "SELECT count(*) AS n FROM invitations WHERE organization_id = '{own}' \
                 AND status = 'accepted' AND user_id = '{}'",
                member.user_id
            )
        )
        .await,
        1
    );
    // The returned token works for the new member.
    let me = c
        .list_members(authed(
            pb::ListMembersRequest::default(),
            &joined.access_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.total_size, 2);

    // Used once only.
    let err = c
        .accept_invitation(accept(&token, "again"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // An e-mail that became a user of the tenant meanwhile is refused.
    let later = invitation(&suite.db, own, "bob@example.test").await;
    user(&suite.db, own, "bob", "member").await;
    let err = c
        .accept_invitation(accept(&later, "bobby"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // A suspended tenant cannot be joined.
    let closed = tenant(&suite.db, "suspended", 10).await;
    let t = invitation(&suite.db, closed, "c@x.test").await;
    let err = c.accept_invitation(accept(&t, "closed")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("payment overdue"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn decline_is_final() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 10).await;
    let token = invitation(&suite.db, own, "d@x.test").await;

    let err = c
        .decline_invitation(pb::DeclineInvitationRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["token".to_owned()]);
    let err = c
        .decline_invitation(pb::DeclineInvitationRequest {
            token: "unknown".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    c.decline_invitation(pb::DeclineInvitationRequest {
        token: token.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        count(
            &suite.db,
            "SELECT count(*) AS n FROM invitations WHERE status = 'declined' \
             AND declined_at IS NOT NULL"
        )
        .await,
        1
    );
    let err = c
        .decline_invitation(pb::DeclineInvitationRequest {
            token: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = c
        .accept_invitation(accept(&token, "dee"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_accepts_fill_exactly_five_seats() {
    let suite = Suite::start().await;
    let own = tenant(&suite.db, "active", 6).await;
    user(&suite.db, own, "alice", "admin").await;
    let mut tokens = Vec::new();
    for i in 0..20 {
        tokens.push(invitation(&suite.db, own, &format!("racer{i}@x.test")).await);
    }
    let channel = suite.admin.channel().await;
    let calls = tokens.into_iter().enumerate().map(|(i, token)| {
        let mut c = OrganizationServiceClient::new(channel.clone());
        tokio::spawn(async move {
            c.accept_invitation(accept(&token, &format!("racer{i}")))
                .await
        })
    });
    let results = futures::future::join_all(calls).await;
    let mut ok = 0;
    for r in results {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(
        count(
            &suite.db,
            &format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{own}' AND current_users = 6"
            )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &suite.db,
            &format!("SELECT count(*) AS n FROM users WHERE organization_id = '{own}'")
        )
        .await,
        6
    );
    assert_eq!(
        count(
            &suite.db,
            "SELECT count(*) AS n FROM invitations WHERE status = 'accepted'"
        )
        .await,
        5
    );
}
