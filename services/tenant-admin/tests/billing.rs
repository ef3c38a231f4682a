//! BillingService through real gRPC on a real Postgres: usage and warnings, subscription,
//! usage history, subscription changes, invoices and payment methods.

#![expect(clippy::unwrap_used, reason = "tests")]

use chrono::Datelike as _;
use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use tenantry_auth::OrgRole;
use tenantry_proto::admin::v1 as pb;
use tenantry_proto::admin::v1::billing_service_client::BillingServiceClient;
use tenantry_proto::common::v1 as common;
use tenantry_testing::{Suite, TestDb, authed, member_token, roleless_token};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

type Client = BillingServiceClient<Channel>;

async fn client(suite: &Suite) -> Client {
    BillingServiceClient::new(suite.admin.channel().await)
}

/// Inserts a tenant with a trial ending in `trial_hours`.
async fn tenant(db: &TestDb, status: &str, trial_hours: i32) -> Uuid {
    let id = Uuid::new_v4();
    let mut conn = db.admin_conn().await;
    diesel::sql_query(
        "INSERT INTO organizations (id, name, slug, status, trial_started_at, trial_expires_at, \
         is_active, suspension_reason) \
         VALUES ($1, 'Billing Org', $2, $3, now() - interval '1 day', \
                 now() + make_interval(hours => $4), $3 <> 'suspended', \
                 CASE WHEN $3 = 'suspended' THEN 'payment overdue' END)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(format!("org-{}", id.simple()))
    .bind::<Text, _>(status)
    .bind::<Integer, _>(trial_hours)
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

fn bad_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn billing_usage_warns_at_80_and_100_percent() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 240).await;
    let other = tenant(&suite.db, "active", 240).await;
    sql(
        &suite.db,
        &format!(
            "UPDATE organizations SET current_users = 9, current_classes = 5, \
             current_storage_gb = 0.5 WHERE id = '{own}'"
        ),
    )
    .await;
    let token = member_token(own, OrgRole::Member);

    let out = c
        .get_billing_usage(authed(pb::GetBillingUsageRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.tenant_name, "Billing Org");
    assert!(out.over_limit);
    assert_eq!(out.warnings.len(), 2);
    assert_eq!(out.warnings[0].metric, common::LimitMetric::Users as i32);
    assert!(!out.warnings[0].exceeded);
    assert_eq!(out.warnings[0].message, "users usage at 90%");
    assert_eq!(out.warnings[1].metric, common::LimitMetric::Classes as i32);
    assert!(out.warnings[1].exceeded);
    assert_eq!(out.warnings[1].message, "classes limit exceeded");
    assert_eq!(out.usage_percentage.len(), 5);
    assert_eq!(out.usage_percentage[2].percentage, 50.0);
    assert_eq!(out.current_usage.unwrap().current_users, 9);
    let start =
        chrono::DateTime::from_timestamp(out.billing_period_start.unwrap().seconds, 0).unwrap();
    let end = chrono::DateTime::from_timestamp(out.billing_period_end.unwrap().seconds, 0).unwrap();
    assert_eq!((start.day(), end.day()), (1, 1));
    assert!(start <= chrono::Utc::now() && chrono::Utc::now() < end);

    let a = c
        .get_billing_usage(authed(
            pb::GetBillingUsageRequest {
                tenant_id: other.to_string(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    let b = c
        .get_billing_usage(authed(
            pb::GetBillingUsageRequest {
                tenant_id: Uuid::new_v4().to_string(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    assert_eq!(a.code(), Code::NotFound);
    let err = c
        .get_billing_usage(authed(
            pb::GetBillingUsageRequest {
                tenant_id: "xyz".into(),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["tenant_id".to_owned()]);
    let err = c
        .get_billing_usage(authed(
            pb::GetBillingUsageRequest::default(),
            &roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let suspended = tenant(&suite.db, "suspended", 24).await;
    let err = c
        .get_billing_usage(authed(
            pb::GetBillingUsageRequest::default(),
            &member_token(suspended, OrgRole::Admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_counts_trial_days_up() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let running = tenant(&suite.db, "trial", 84).await; // 3.5 days
    let ended = tenant(&suite.db, "trial", -2).await;

    let s = c
        .get_subscription(authed(
            pb::GetSubscriptionRequest::default(),
            &member_token(running, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert!(s.is_trial);
    assert_eq!(s.trial_days_remaining, Some(4));
    assert_eq!(s.status, common::TenantStatus::Trial as i32);
    assert_eq!(s.subscription_tier, common::SubscriptionTier::Free as i32);
    assert!(s.auto_renew);

    let s = c
        .get_subscription(authed(
            pb::GetSubscriptionRequest::default(),
            &member_token(ended, OrgRole::Member),
        ))
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert!(!s.is_trial);
    assert_eq!(s.trial_days_remaining, Some(0));

    let err = c
        .get_subscription(authed(
            pb::GetSubscriptionRequest {
                tenant_id: ended.to_string(),
            },
            &member_token(running, OrgRole::Member),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .get_subscription(authed(
            pb::GetSubscriptionRequest {
                tenant_id: "1".into(),
            },
            &member_token(running, OrgRole::Member),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["tenant_id".to_owned()]);
    let err = c
        .get_subscription(authed(
            pb::GetSubscriptionRequest::default(),
            &roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_history_reads_daily_snapshots() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 240).await;
    let other = tenant(&suite.db, "active", 240).await;
    sql(
        &suite.db,
        &format!("UPDATE organizations SET current_users = 7 WHERE id = '{own}'"),
    )
    .await;
    // Today's snapshot from the writer the background task runs, plus three older days and
    // one outside the window.
    {
        let mut conn = suite.db.admin_conn().await;
        let n = tenantry_db::models::billing::write_daily_snapshots(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
    sql(
        &suite.db,
        &format!(
            "INSERT INTO usage_logs (organization_id, period, users_count) VALUES \
             ('{own}', current_date - 1, 6), ('{own}', current_date - 2, 5), \
             ('{own}', current_date - 3, 4), ('{own}', current_date - 40, 1)"
        ),
    )
    .await;
    let token = member_token(own, OrgRole::Member);

    let first = c
        .list_usage_history(authed(
            pb::ListUsageHistoryRequest {
                page_size: 3,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.total_size, 4);
    let users: Vec<i32> = first.entries.iter().map(|e| e.users).collect();
    assert_eq!(users, [7, 6, 5]);
    let second = c
        .list_usage_history(authed(
            pb::ListUsageHistoryRequest {
                page_size: 3,
                page_token: first.next_page_token,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.entries.len(), 1);
    assert_eq!(second.entries[0].users, 4);
    assert!(second.next_page_token.is_empty());
    let year = c
        .list_usage_history(authed(
            pb::ListUsageHistoryRequest {
                days: Some(365),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(year.total_size, 5);

    for days in [0, 366] {
        let err = c
            .list_usage_history(authed(
                pb::ListUsageHistoryRequest {
                    days: Some(days),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), vec!["days".to_owned()]);
    }
    let err = c
        .list_usage_history(authed(
            pb::ListUsageHistoryRequest {
                tenant_id: other.to_string(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .list_usage_history(authed(
            pb::ListUsageHistoryRequest::default(),
            &roleless_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn change_subscription_and_invoices() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "trial", 240).await;
    let other = tenant(&suite.db, "active", 240).await;
    let admin = member_token(own, OrgRole::Admin);
    let change = |tier: common::SubscriptionTier| pb::ChangeSubscriptionRequest {
        tenant_id: String::new(),
        subscription_tier: tier as i32,
        auto_renew: Some(false),
    };

    let out = c
        .change_subscription(authed(
            change(common::SubscriptionTier::Professional),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.previous_tier, common::SubscriptionTier::Free as i32);
    assert_eq!(
        out.message,
        "subscription changed from free to professional"
    );
    let s = out.subscription.unwrap();
    assert_eq!(
        s.subscription_tier,
        common::SubscriptionTier::Professional as i32
    );
    assert_eq!(s.status, common::TenantStatus::Active as i32);
    assert!(!s.is_trial);
    assert!(!s.auto_renew);
    assert_eq!(
        s.expires_at.unwrap().seconds - out.effective_date.unwrap().seconds,
        30 * 86_400
    );
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM organizations WHERE id = '{own}' \
                 AND max_users = 200 AND max_roblox_sessions = 100"
            ))
            .await,
        1
    );
    c.change_subscription(authed(change(common::SubscriptionTier::Free), &admin))
        .await
        .unwrap();
    // An old unpaid invoice past its due date reads as overdue.
    sql(
        &suite.db,
        &format!(
            "INSERT INTO billing_invoices (organization_id, invoice_number, amount_cents, status, \
             issued_at, due_at, period_start, period_end) VALUES ('{own}', 'OLD-1', 1000, \
             'unpaid', now() - interval '60 days', now() - interval '46 days', \
             now() - interval '60 days', now() - interval '30 days')"
        ),
    )
    .await;

    let all = c
        .list_invoices(authed(pb::ListInvoicesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.total_size, 3);
    let statuses: Vec<i32> = all.invoices.iter().map(|i| i.status).collect();
    assert_eq!(
        statuses,
        [
            pb::InvoiceStatus::Paid as i32,
            pb::InvoiceStatus::Unpaid as i32,
            pb::InvoiceStatus::Overdue as i32
        ]
    );
    let pro = &all.invoices[1];
    assert_eq!(pro.amount_minor_units, 9_900);
    assert_eq!(pro.currency, "USD");
    assert_eq!(pro.line_items.len(), 1);
    assert_eq!(pro.line_items[0].amount_minor_units, 9_900);
    assert_eq!(
        pro.period_end.unwrap().seconds - pro.period_start.unwrap().seconds,
        30 * 86_400
    );
    let overdue = c
        .list_invoices(authed(
            pb::ListInvoicesRequest {
                status: pb::InvoiceStatus::Overdue as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overdue.total_size, 1);
    assert_eq!(overdue.invoices[0].invoice_number, "OLD-1");
    let page = c
        .list_invoices(authed(
            pb::ListInvoicesRequest {
                page_size: 2,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let rest = c
        .list_invoices(authed(
            pb::ListInvoicesRequest {
                page_size: 2,
                page_token: page.next_page_token,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.invoices.len(), 1);
    assert_eq!(rest.invoices[0].invoice_number, "OLD-1");

    // A downgrade below usage is refused.
    sql(
        &suite.db,
        &format!("UPDATE organizations SET current_users = 11 WHERE id = '{own}'"),
    )
    .await;
    let err = c
        .change_subscription(authed(change(common::SubscriptionTier::Free), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("max_users"), "{}", err.message());

    // Validation, roles, other tenants.
    let err = c
        .change_subscription(authed(
            change(common::SubscriptionTier::Unspecified),
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["subscription_tier".to_owned()]);
    let err = c
        .list_invoices(authed(
            pb::ListInvoicesRequest {
                page_size: -1,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["page_size".to_owned()]);
    let manager = member_token(own, OrgRole::Manager);
    let err = c
        .change_subscription(authed(change(common::SubscriptionTier::Basic), &manager))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = c
        .list_invoices(authed(pb::ListInvoicesRequest::default(), &manager))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut foreign = change(common::SubscriptionTier::Basic);
    foreign.tenant_id = other.to_string();
    let err = c
        .change_subscription(authed(foreign, &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .list_invoices(authed(
            pb::ListInvoicesRequest {
                tenant_id: other.to_string(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

fn card(reference: &str, last4: &str, year: i32) -> pb::AddPaymentMethodRequest {
    pb::AddPaymentMethodRequest {
        processor: "stripe".into(),
        processor_reference: reference.into(),
        r#type: pb::PaymentMethodType::Card as i32,
        brand: "visa".into(),
        last4: last4.into(),
        exp_month: 12,
        exp_year: year,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_methods_keep_one_default() {
    let suite = Suite::start().await;
    let mut c = client(&suite).await;
    let own = tenant(&suite.db, "active", 240).await;
    let other = tenant(&suite.db, "active", 240).await;
    let admin = member_token(own, OrgRole::Admin);
    let next_year = chrono::Utc::now().year() + 1;

    let first = c
        .add_payment_method(authed(card("pm_1", "4242", next_year), &admin))
        .await
        .unwrap()
        .into_inner()
        .payment_method
        .unwrap();
    assert!(first.is_default, "the first method becomes the default");
    assert_eq!(
        (first.processor.as_str(), first.processor_reference.as_str()),
        ("stripe", "pm_1")
    );
    assert_eq!(first.last4, "4242");
    let mut paypal = card("pp_1", "", 0);
    paypal.r#type = pb::PaymentMethodType::Paypal as i32;
    paypal.exp_month = 0;
    paypal.brand = String::new();
    let second = c
        .add_payment_method(authed(paypal, &admin))
        .await
        .unwrap()
        .into_inner()
        .payment_method
        .unwrap();
    assert!(!second.is_default);
    let mut third = card("pm_3", "1881", next_year);
    third.set_default = true;
    let third = c
        .add_payment_method(authed(third, &admin))
        .await
        .unwrap()
        .into_inner()
        .payment_method
        .unwrap();
    assert!(third.is_default);
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM payment_methods WHERE organization_id = '{own}' \
                 AND is_default"
            ))
            .await,
        1
    );

    let listed = c
        .list_payment_methods(authed(pb::ListPaymentMethodsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.total_size, 3);
    assert_eq!(
        listed.payment_methods[0].payment_method_id,
        third.payment_method_id
    );

    // Duplicates and bad input write nothing.
    let err = c
        .add_payment_method(authed(card("pm_1", "4242", next_year), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = c
        .add_payment_method(authed(card("pm_x", "12a4", next_year), &admin))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["last4".to_owned()]);
    let err = c
        .add_payment_method(authed(card("pm_y", "1234", 2001), &admin))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["exp_year".to_owned()]);
    let mut month = card("pm_z", "1234", next_year);
    month.exp_month = 13;
    month.r#type = 0;
    let err = c
        .add_payment_method(authed(month, &admin))
        .await
        .unwrap_err();
    let fields = bad_fields(&err);
    assert!(fields.contains(&"type".to_owned()), "{fields:?}");
    assert_eq!(
        suite
            .db
            .count("SELECT count(*) AS n FROM payment_methods")
            .await,
        3
    );

    // The default cannot go while others remain.
    let remove = |id: &str| pb::RemovePaymentMethodRequest {
        tenant_id: String::new(),
        payment_method_id: id.into(),
    };
    let err = c
        .remove_payment_method(authed(remove(&third.payment_method_id), &admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let now_default = c
        .set_default_payment_method(authed(
            pb::SetDefaultPaymentMethodRequest {
                tenant_id: String::new(),
                payment_method_id: first.payment_method_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .payment_method
        .unwrap();
    assert!(now_default.is_default);
    c.remove_payment_method(authed(remove(&third.payment_method_id), &admin))
        .await
        .unwrap();
    assert_eq!(
        suite
            .db
            .count(&format!(
                "SELECT count(*) AS n FROM audit_events WHERE organization_id = '{own}' \
                 AND action LIKE 'tenantry.admin.v1.BillingService/%'"
            ))
            .await,
        5
    );

    // Bad ids, roles, other tenants.
    let err = c
        .remove_payment_method(authed(remove("nope"), &admin))
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), vec!["payment_method_id".to_owned()]);
    let err = c
        .list_payment_methods(authed(
            pb::ListPaymentMethodsRequest::default(),
            &member_token(own, OrgRole::Manager),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let other_admin = member_token(other, OrgRole::Admin);
    let a = c
        .set_default_payment_method(authed(
            pb::SetDefaultPaymentMethodRequest {
                tenant_id: String::new(),
                payment_method_id: first.payment_method_id.clone(),
            },
            &other_admin,
        ))
        .await
        .unwrap_err();
    let b = c
        .set_default_payment_method(authed(
            pb::SetDefaultPaymentMethodRequest {
                tenant_id: String::new(),
                payment_method_id: Uuid::new_v4().to_string(),
            },
            &other_admin,
        ))
        .await
        .unwrap_err();
    assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    assert_eq!(a.code(), Code::NotFound);
    let err = c
        .add_payment_method(authed(
            pb::AddPaymentMethodRequest {
                tenant_id: own.to_string(),
                ..card("pm_9", "9999", next_year)
            },
            &other_admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
