// Diesel schema for migrations/2026-11-27-000001_initial, in the layout `diesel print-schema`
// produces (tables and columns in database order). Keep it in step with the SQL.
//
// `organizations` has 47 columns: diesel needs its `64-column-tables` feature.
// Every table has ENABLE + FORCE row-level security; see up.sql for the GUC convention.

diesel::table! {
    /// Append-only audit trail; `organization_id` is NULL for platform events.
    audit_events (id) {
        id -> Uuid,
        organization_id -> Nullable<Uuid>,
        actor_id -> Nullable<Text>,
        actor_role -> Nullable<Text>,
        action -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        metadata -> Jsonb,
        request_id -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    /// Tenant backups. `organization_id` is not a foreign key: a backup outlives its tenant.
    /// Visible in platform mode only.
    backups (id) {
        id -> Uuid,
        organization_id -> Uuid,
        path -> Text,
        manifest -> Jsonb,
        checksum -> Text,
        size_bytes -> Nullable<Int8>,
        created_by -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    billing_invoices (id) {
        id -> Uuid,
        organization_id -> Uuid,
        invoice_number -> Text,
        /// Minor currency units.
        amount_cents -> Int8,
        currency -> Text,
        status -> Text,
        description -> Nullable<Text>,
        line_items -> Jsonb,
        period_start -> Nullable<Timestamptz>,
        period_end -> Nullable<Timestamptz>,
        issued_at -> Timestamptz,
        due_at -> Nullable<Timestamptz>,
        paid_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    email_outbox (id) {
        id -> Uuid,
        organization_id -> Uuid,
        message_id -> Text,
        /// `welcome`, `invitation`, `password_reset` or `notification`.
        kind -> Text,
        to_address -> Text,
        subject -> Text,
        body_text -> Text,
        /// Non-secret template data (user or invitation id); tokens are minted at send time.
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        sent_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (method, key) {
        method -> Text,
        key -> Text,
        organization_id -> Nullable<Uuid>,
        request_hash -> Bytea,
        response -> Nullable<Bytea>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    integrations (organization_id, name) {
        organization_id -> Uuid,
        name -> Text,
        enabled -> Bool,
        config -> Jsonb,
        /// Write-only at the API.
        secrets -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    invitations (id) {
        id -> Uuid,
        organization_id -> Uuid,
        email -> Text,
        org_role -> Text,
        status -> Text,
        /// SHA-256 of the invitation token; the token is never stored.
        token_hash -> Bytea,
        invited_by -> Nullable<Uuid>,
        message -> Nullable<Text>,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        declined_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        user_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        slug -> Text,
        display_name -> Nullable<Text>,
        description -> Nullable<Text>,
        website -> Nullable<Text>,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        address -> Jsonb,
        organization_type -> Text,
        industry -> Nullable<Text>,
        size_category -> Nullable<Text>,
        subscription_tier -> Text,
        status -> Text,
        auto_renew -> Bool,
        trial_days -> Int4,
        trial_started_at -> Nullable<Timestamptz>,
        trial_expires_at -> Nullable<Timestamptz>,
        subscription_started_at -> Nullable<Timestamptz>,
        subscription_expires_at -> Nullable<Timestamptz>,
        billing_email -> Nullable<Text>,
        billing_address -> Jsonb,
        tax_id -> Nullable<Text>,
        last_billing_date -> Nullable<Timestamptz>,
        next_billing_date -> Nullable<Timestamptz>,
        max_users -> Int4,
        max_classes -> Int4,
        /// Gigabytes, as `f64`.
        max_storage_gb -> Float8,
        max_api_calls_per_month -> Int4,
        max_roblox_sessions -> Int4,
        current_users -> Int4,
        current_classes -> Int4,
        /// Gigabytes, as `f64`.
        current_storage_gb -> Float8,
        current_api_calls_this_month -> Int4,
        current_roblox_sessions -> Int4,
        /// First day (UTC) of the month `current_api_calls_this_month` counts.
        api_calls_month_start -> Date,
        is_active -> Bool,
        is_verified -> Bool,
        is_demo -> Bool,
        suspended_at -> Nullable<Timestamptz>,
        suspension_reason -> Nullable<Text>,
        deleted_at -> Nullable<Timestamptz>,
        deleted_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        created_by -> Nullable<Uuid>,
        updated_by -> Nullable<Uuid>,
    }
}

diesel::table! {
    password_tokens (id) {
        id -> Uuid,
        organization_id -> Uuid,
        user_id -> Uuid,
        /// SHA-256 of the set-password token; the token is never stored.
        token_hash -> Bytea,
        purpose -> Text,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    payment_methods (id) {
        id -> Uuid,
        organization_id -> Uuid,
        #[sql_name = "type"]
        type_ -> Text,
        brand -> Nullable<Text>,
        last4 -> Nullable<Text>,
        exp_month -> Nullable<Int4>,
        exp_year -> Nullable<Int4>,
        is_default -> Bool,
        external_ref -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    /// Platform (super) admin accounts (migration 000002). Visible in platform mode only.
    platform_admins (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        failed_login_attempts -> Int4,
        locked_until -> Nullable<Timestamptz>,
        last_login_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    provisioning_jobs (id) {
        id -> Uuid,
        organization_id -> Uuid,
        request_id -> Nullable<Text>,
        status -> Text,
        params -> Jsonb,
        result -> Nullable<Jsonb>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        error -> Nullable<Text>,
        requested_by -> Nullable<Text>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    provisioning_steps (job_id, name) {
        job_id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        state -> Text,
        attempts -> Int4,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    tenant_features (organization_id, feature) {
        organization_id -> Uuid,
        feature -> Text,
        enabled -> Bool,
        source -> Text,
        updated_by -> Nullable<Uuid>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    tenant_settings (organization_id) {
        organization_id -> Uuid,
        timezone -> Text,
        locale -> Text,
        logo_url -> Nullable<Text>,
        primary_color -> Nullable<Text>,
        secondary_color -> Nullable<Text>,
        custom_domain -> Nullable<Text>,
        security -> Jsonb,
        compliance -> Jsonb,
        custom_settings -> Jsonb,
        /// Configuration version: bumped by the writer, and by a trigger when the
        /// organization's status, tier or limits change (migration 000003).
        version -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        /// At most 64 KiB (migration 000003).
        custom_css -> Nullable<Text>,
        /// 1 to 50 characters; NULL reads as "roblox" (migration 000003).
        default_theme -> Nullable<Text>,
    }
}

diesel::table! {
    usage_events (id) {
        id -> Uuid,
        organization_id -> Uuid,
        metric -> Text,
        delta -> Float8,
        /// Counter value after this event.
        value_after -> Float8,
        request_id -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    usage_logs (id) {
        id -> Uuid,
        organization_id -> Uuid,
        log_type -> Text,
        period -> Date,
        users_count -> Int4,
        classes_count -> Int4,
        storage_gb -> Float8,
        api_calls_count -> Int4,
        roblox_sessions_count -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        organization_id -> Uuid,
        email -> Text,
        username -> Text,
        password_hash -> Nullable<Text>,
        first_name -> Nullable<Text>,
        last_name -> Nullable<Text>,
        org_role -> Text,
        status -> Text,
        email_verified -> Bool,
        failed_login_attempts -> Int4,
        locked_until -> Nullable<Timestamptz>,
        last_login_at -> Nullable<Timestamptz>,
        password_changed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

// `backups.organization_id` has no foreign key on purpose (backups outlive the tenant), so it
// has no joinable! either. Composite keys (e.g. password_tokens (organization_id, user_id) ->
// users) are declared on their single-column part.
diesel::joinable!(audit_events -> organizations (organization_id));
diesel::joinable!(billing_invoices -> organizations (organization_id));
diesel::joinable!(email_outbox -> organizations (organization_id));
diesel::joinable!(idempotency_keys -> organizations (organization_id));
diesel::joinable!(integrations -> organizations (organization_id));
diesel::joinable!(invitations -> organizations (organization_id));
diesel::joinable!(invitations -> users (user_id));
diesel::joinable!(password_tokens -> organizations (organization_id));
diesel::joinable!(password_tokens -> users (user_id));
diesel::joinable!(payment_methods -> organizations (organization_id));
diesel::joinable!(provisioning_jobs -> organizations (organization_id));
diesel::joinable!(provisioning_steps -> organizations (organization_id));
diesel::joinable!(provisioning_steps -> provisioning_jobs (job_id));
diesel::joinable!(tenant_features -> organizations (organization_id));
diesel::joinable!(tenant_settings -> organizations (organization_id));
diesel::joinable!(usage_events -> organizations (organization_id));
diesel::joinable!(usage_logs -> organizations (organization_id));
diesel::joinable!(users -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    backups,
    billing_invoices,
    email_outbox,
    idempotency_keys,
    integrations,
    invitations,
    organizations,
    password_tokens,
    payment_methods,
    provisioning_jobs,
    provisioning_steps,
    tenant_features,
    tenant_settings,
    usage_events,
    usage_logs,
    users,
);
