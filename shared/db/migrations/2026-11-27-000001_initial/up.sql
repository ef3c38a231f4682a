-- Tenantry: initial schema (PostgreSQL 15+).
--
-- Conventions
-- * Runs as role `tenantry_owner`, which owns every object created here. The services connect
--   as `tenantry_app` (LOGIN, NOSUPERUSER, NOBYPASSRLS, owns nothing), created by the bootstrap
--   code, never by a migration. `tenantry_app` only gets the DML grants at the end of this file.
-- * Enumerations are `text` + CHECK, not native enums: adding a value is a one-line constraint
--   swap inside a transaction, and Diesel maps them to `Text` without custom SQL types.
-- * Free text is `text` with a `char_length` CHECK wherever the brief gives a length bound.
-- * Every CHECK constraint is named `<table>_<what>`, so the services can map a check
--   violation (SQLSTATE 23514) to a field violation by constraint name.
-- * Times are `timestamptz`; ids are `uuid DEFAULT gen_random_uuid()` (built in since PG 13).
-- * Tenant isolation: every table that holds tenant data carries `organization_id`, has
--   ENABLE + FORCE ROW LEVEL SECURITY and one policy driven by two transaction-local GUCs
--   (see "Row-level security" below). Uniqueness is per tenant unless stated otherwise.
-- * Actor columns (`created_by`, `invited_by`, ...) are plain uuids without a foreign key: the
--   actor may be a super admin or a service that has no row in `users`.

-------------------------------------------------------------------------------------------------
-- Tenant-context helpers
-------------------------------------------------------------------------------------------------

-- The tenant of the current transaction, from `SELECT set_config('tenantry.tenant_id', $1, true)`.
-- Unset (NULL) and empty ('' is what a GUC reverts to after a transaction-local set on the same
-- connection) both yield NULL, and `organization_id = NULL` matches no row: a tenant-less
-- transaction fails closed. A value that is not a uuid raises an error rather than matching.
CREATE FUNCTION tenantry_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('tenantry.tenant_id', true), '')::uuid $$;

COMMENT ON FUNCTION tenantry_current_tenant() IS
    'Tenant of the current transaction (GUC tenantry.tenant_id), NULL when unset or empty.';

-- Platform mode, `SELECT set_config('tenantry.platform', 'on', true)`: only for a super admin
-- or a `service` caller, and for the few public lookups that must find a row before a tenant
-- is known (login by tenant slug, accepting an invitation or a set-password token by hash).
CREATE FUNCTION tenantry_is_platform() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(current_setting('tenantry.platform', true), '') = 'on' $$;

COMMENT ON FUNCTION tenantry_is_platform() IS
    'True when the current transaction runs in platform mode (GUC tenantry.platform = on).';

-- Maintains `updated_at` on every UPDATE, so no code path can forget it.
CREATE FUNCTION tenantry_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Publishes `pg_notify('tenantry_tenant_changed', <tenant uuid>)` so that tenant-settings can
-- drop its cache entry and push a WatchTenant update. TG_ARGV[0] says which column holds the
-- tenant id: 'id' on organizations, 'organization_id' elsewhere. SECURITY INVOKER and it reads
-- no table, so it behaves the same under RLS for every caller. NOTIFY is delivered on commit
-- only, and identical payloads within one transaction are delivered once.
CREATE FUNCTION tenantry_notify_tenant_changed() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER
    AS $$
DECLARE
    changed record;
    tenant  uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := OLD;
    ELSE
        changed := NEW;
    END IF;
    -- record fields are resolved at run time, so the branch not taken never touches a
    -- column the table lacks.
    IF TG_ARGV[0] = 'id' THEN
        tenant := changed.id;
    ELSE
        tenant := changed.organization_id;
    END IF;
    PERFORM pg_notify('tenantry_tenant_changed', tenant::text);
    RETURN NULL;
END
$$;

-------------------------------------------------------------------------------------------------
-- organizations (tenant registry; owned by tenant-admin)
-------------------------------------------------------------------------------------------------
-- Settings, branding, security, compliance, feature flags and integrations are not columns
-- here: they live in tenant_settings, tenant_features and integrations (owned by
-- tenant-settings), so each fact is stored once.

CREATE TABLE organizations (
    id                            uuid             PRIMARY KEY DEFAULT gen_random_uuid(),

    -- identity; the slug is globally unique, across soft-deleted rows too, so a restore can
    -- never collide and a slug is never silently reused.
    name                          text             NOT NULL,
    slug                          text             NOT NULL,

    -- profile and contact
    display_name                  text,
    description                   text,
    website                       text,
    email                         text,
    phone                         text,
    address                       jsonb            NOT NULL DEFAULT '{}',

    -- classification
    organization_type             text             NOT NULL DEFAULT 'education',
    industry                      text,
    size_category                 text,

    -- subscription
    subscription_tier             text             NOT NULL DEFAULT 'free',
    status                        text             NOT NULL DEFAULT 'trial',
    auto_renew                    boolean          NOT NULL DEFAULT true,
    -- trial length requested at creation; `trial` status is only possible when it is > 0.
    trial_days                    integer          NOT NULL DEFAULT 14,
    trial_started_at              timestamptz,
    trial_expires_at              timestamptz,
    subscription_started_at       timestamptz,
    subscription_expires_at       timestamptz,

    -- billing
    billing_email                 text,
    billing_address               jsonb            NOT NULL DEFAULT '{}',
    tax_id                        text,
    last_billing_date             timestamptz,
    next_billing_date             timestamptz,

    -- limits: defaults are the free row of seed-analysis §3.3 table (A); upper bounds are the
    -- admin limits endpoint's (enterprise row, 10M API calls).
    max_users                     integer          NOT NULL DEFAULT 10,
    max_classes                   integer          NOT NULL DEFAULT 5,
    max_storage_gb                double precision NOT NULL DEFAULT 1.0,
    max_api_calls_per_month       integer          NOT NULL DEFAULT 1000,
    max_roblox_sessions           integer          NOT NULL DEFAULT 5,

    -- usage counters, maintained by the operations that change them. No upper bound: a limit
    -- may be forced below current usage, and a counter is never capped silently.
    current_users                 integer          NOT NULL DEFAULT 0,
    current_classes               integer          NOT NULL DEFAULT 0,
    current_storage_gb            double precision NOT NULL DEFAULT 0.0,
    current_api_calls_this_month  integer          NOT NULL DEFAULT 0,
    current_roblox_sessions       integer          NOT NULL DEFAULT 0,
    -- first day (UTC) of the calendar month that current_api_calls_this_month counts; when the
    -- month has moved on, the next increment resets the counter and advances this date.
    api_calls_month_start         date             NOT NULL
        DEFAULT (date_trunc('month', now() AT TIME ZONE 'UTC'))::date,

    -- lifecycle
    is_active                     boolean          NOT NULL DEFAULT true,
    is_verified                   boolean          NOT NULL DEFAULT false,
    is_demo                       boolean          NOT NULL DEFAULT false,
    suspended_at                  timestamptz,
    suspension_reason             text,
    deleted_at                    timestamptz,
    deleted_by                    uuid,

    created_at                    timestamptz      NOT NULL DEFAULT now(),
    updated_at                    timestamptz      NOT NULL DEFAULT now(),
    created_by                    uuid,
    updated_by                    uuid,

    CONSTRAINT organizations_slug_key UNIQUE (slug),
    CONSTRAINT organizations_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    -- lowercase alphanumeric words separated by single hyphens: no leading, trailing or
    -- repeated hyphen (the seed's `^[a-z0-9-]+$` allowed them).
    CONSTRAINT organizations_slug_format CHECK (
        slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' AND char_length(slug) BETWEEN 2 AND 100),
    CONSTRAINT organizations_display_name_length CHECK (char_length(display_name) <= 250),
    CONSTRAINT organizations_website_length CHECK (char_length(website) <= 500),
    CONSTRAINT organizations_email_format CHECK (
        char_length(email) <= 255 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT organizations_phone_length CHECK (char_length(phone) <= 50),
    CONSTRAINT organizations_address_object CHECK (jsonb_typeof(address) = 'object'),
    CONSTRAINT organizations_organization_type_value CHECK (
        organization_type IN ('education', 'corporate', 'nonprofit')),
    CONSTRAINT organizations_industry_length CHECK (char_length(industry) <= 100),
    CONSTRAINT organizations_size_category_value CHECK (
        size_category IN ('small', 'medium', 'large', 'enterprise')),
    CONSTRAINT organizations_subscription_tier_value CHECK (
        subscription_tier IN ('free', 'basic', 'professional', 'enterprise', 'education')),
    CONSTRAINT organizations_status_value CHECK (
        status IN ('active', 'suspended', 'trial', 'pending', 'cancelled')),
    CONSTRAINT organizations_trial_days_range CHECK (trial_days BETWEEN 0 AND 90),
    CONSTRAINT organizations_trial_status CHECK (status <> 'trial' OR trial_days > 0),
    -- trial dates exist only for tenants created with a trial (the seed set them for 0 days).
    CONSTRAINT organizations_trial_dates CHECK (
        trial_days > 0 OR (trial_started_at IS NULL AND trial_expires_at IS NULL)),
    CONSTRAINT organizations_trial_window CHECK (trial_expires_at >= trial_started_at),
    CONSTRAINT organizations_subscription_window CHECK (
        subscription_expires_at >= subscription_started_at),
    CONSTRAINT organizations_billing_email_format CHECK (
        char_length(billing_email) <= 255
        AND billing_email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT organizations_billing_address_object CHECK (
        jsonb_typeof(billing_address) = 'object'),
    CONSTRAINT organizations_tax_id_length CHECK (char_length(tax_id) <= 100),
    CONSTRAINT organizations_max_users_range CHECK (max_users BETWEEN 1 AND 10000),
    CONSTRAINT organizations_max_classes_range CHECK (max_classes BETWEEN 0 AND 1000),
    -- a comparison with NaN is true for `>= 0` in Postgres but false for `<= 1000`, so the
    -- range also rejects NaN and infinity.
    CONSTRAINT organizations_max_storage_gb_range CHECK (max_storage_gb BETWEEN 0 AND 1000),
    CONSTRAINT organizations_max_api_calls_per_month_range CHECK (
        max_api_calls_per_month BETWEEN 0 AND 10000000),
    CONSTRAINT organizations_max_roblox_sessions_range CHECK (
        max_roblox_sessions BETWEEN 0 AND 1000),
    CONSTRAINT organizations_current_users_nonnegative CHECK (current_users >= 0),
    CONSTRAINT organizations_current_classes_nonnegative CHECK (current_classes >= 0),
    -- `< 'Infinity'` also rejects NaN, which sorts above infinity.
    CONSTRAINT organizations_current_storage_gb_nonnegative CHECK (
        current_storage_gb >= 0 AND current_storage_gb < 'Infinity'),
    CONSTRAINT organizations_current_api_calls_nonnegative CHECK (
        current_api_calls_this_month >= 0),
    CONSTRAINT organizations_current_roblox_sessions_nonnegative CHECK (
        current_roblox_sessions >= 0),
    CONSTRAINT organizations_api_calls_month_start_first_day CHECK (
        extract(day FROM api_calls_month_start) = 1),
    -- soft delete always means cancelled (restore clears deleted_at first).
    CONSTRAINT organizations_deleted_is_cancelled CHECK (
        deleted_at IS NULL OR status = 'cancelled')
);

COMMENT ON TABLE organizations IS
    'Tenant registry. RLS: a tenant sees only its own row; platform mode sees all.';
COMMENT ON COLUMN organizations.max_storage_gb IS
    'Storage limit in GB (double precision, maps to f64).';

-- keyset pagination for ListTenants (ORDER BY created_at DESC, id DESC scans this backwards)
CREATE INDEX organizations_created_at_id_idx ON organizations (created_at, id);
CREATE INDEX organizations_status_idx ON organizations (status);
CREATE INDEX organizations_subscription_tier_idx ON organizations (subscription_tier);
-- expiry sweeps
CREATE INDEX organizations_trial_expires_at_idx ON organizations (trial_expires_at)
    WHERE status = 'trial';
CREATE INDEX organizations_subscription_expires_at_idx ON organizations (subscription_expires_at)
    WHERE subscription_expires_at IS NOT NULL;

-------------------------------------------------------------------------------------------------
-- users (members of one tenant; owned by tenant-admin)
-------------------------------------------------------------------------------------------------

CREATE TABLE users (
    id                     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id        uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email                  text        NOT NULL,
    username               text        NOT NULL,
    -- bcrypt hash; NULL until the user sets a password (set-password token).
    password_hash          text,
    first_name             text,
    last_name              text,
    org_role               text        NOT NULL DEFAULT 'member',
    status                 text        NOT NULL DEFAULT 'pending',
    email_verified         boolean     NOT NULL DEFAULT false,
    failed_login_attempts  integer     NOT NULL DEFAULT 0,
    locked_until           timestamptz,
    last_login_at          timestamptz,
    password_changed_at    timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),

    -- target of the composite foreign keys below: a child row can only point at a user of
    -- its own tenant.
    CONSTRAINT users_organization_id_id_key UNIQUE (organization_id, id),
    CONSTRAINT users_email_format CHECK (
        char_length(email) <= 255 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    -- 128, not the seed's 50: the default admin username is `admin_<slug>` (slug up to 100).
    CONSTRAINT users_username_format CHECK (
        char_length(username) BETWEEN 3 AND 128 AND username !~ '[[:space:]@]'),
    CONSTRAINT users_org_role_value CHECK (org_role IN ('admin', 'manager', 'teacher', 'member')),
    CONSTRAINT users_status_value CHECK (status IN ('active', 'inactive', 'suspended', 'pending')),
    CONSTRAINT users_failed_login_attempts_nonnegative CHECK (failed_login_attempts >= 0)
);

-- per-tenant, case-insensitive uniqueness; a duplicate raises 23505 with the index name.
CREATE UNIQUE INDEX users_organization_id_lower_email_key ON users (organization_id, lower(email));
CREATE UNIQUE INDEX users_organization_id_lower_username_key
    ON users (organization_id, lower(username));
-- keyset pagination for ListMembers; also "is this the last admin?"
CREATE INDEX users_organization_id_created_at_id_idx ON users (organization_id, created_at, id);
CREATE INDEX users_organization_id_org_role_idx ON users (organization_id, org_role);

-------------------------------------------------------------------------------------------------
-- invitations (owned by tenant-admin)
-------------------------------------------------------------------------------------------------

CREATE TABLE invitations (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email            text        NOT NULL,
    org_role         text        NOT NULL DEFAULT 'member',
    status           text        NOT NULL DEFAULT 'pending',
    -- SHA-256 of the invitation token; the token itself is never stored. Globally unique so
    -- AcceptInvitation (public, no tenant yet) can find the row by hash in platform mode.
    token_hash       bytea       NOT NULL,
    invited_by       uuid,
    message          text,
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '7 days',
    accepted_at      timestamptz,
    declined_at      timestamptz,
    revoked_at       timestamptz,
    -- the member created (or matched) on acceptance
    user_id          uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT invitations_token_hash_key UNIQUE (token_hash),
    -- PG 15 column list: deleting the user clears user_id only, not organization_id.
    CONSTRAINT invitations_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES users (organization_id, id) ON DELETE SET NULL (user_id),
    CONSTRAINT invitations_email_format CHECK (
        char_length(email) <= 255 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT invitations_org_role_value CHECK (
        org_role IN ('admin', 'manager', 'teacher', 'member')),
    CONSTRAINT invitations_status_value CHECK (
        status IN ('pending', 'accepted', 'declined', 'revoked', 'expired')),
    CONSTRAINT invitations_token_hash_length CHECK (octet_length(token_hash) BETWEEN 16 AND 64),
    CONSTRAINT invitations_accepted_has_time CHECK (status <> 'accepted' OR accepted_at IS NOT NULL)
);

-- one pending invitation per address and tenant. `expired` is stored lazily: before creating a
-- new invitation, mark the stale pending one expired (or revoke it) in the same transaction.
CREATE UNIQUE INDEX invitations_one_pending_per_email_key
    ON invitations (organization_id, lower(email)) WHERE status = 'pending';
CREATE INDEX invitations_organization_id_created_at_id_idx
    ON invitations (organization_id, created_at, id);
CREATE INDEX invitations_pending_expires_at_idx ON invitations (expires_at)
    WHERE status = 'pending';

-------------------------------------------------------------------------------------------------
-- password_tokens (single-use set-password / reset tokens; owned by tenant-admin)
-------------------------------------------------------------------------------------------------
-- Minted by the outbox relay when it sends the e-mail, so the outbox never holds the secret.

CREATE TABLE password_tokens (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          uuid        NOT NULL,
    -- SHA-256 of the token; globally unique so the public SetPassword can look it up.
    token_hash       bytea       NOT NULL,
    purpose          text        NOT NULL DEFAULT 'welcome',
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT password_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT password_tokens_user_fkey FOREIGN KEY (organization_id, user_id)
        REFERENCES users (organization_id, id) ON DELETE CASCADE,
    CONSTRAINT password_tokens_purpose_value CHECK (purpose IN ('welcome', 'reset')),
    CONSTRAINT password_tokens_token_hash_length CHECK (
        octet_length(token_hash) BETWEEN 16 AND 64),
    CONSTRAINT password_tokens_expiry CHECK (expires_at > created_at)
);

CREATE INDEX password_tokens_user_id_idx ON password_tokens (organization_id, user_id);

-------------------------------------------------------------------------------------------------
-- usage (owned by tenant-admin)
-------------------------------------------------------------------------------------------------

-- Periodic snapshots of the counters. `period` is the day, the ISO week's Monday or the
-- first of the month, by log_type.
CREATE TABLE usage_logs (
    id                     uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id        uuid             NOT NULL
        REFERENCES organizations (id) ON DELETE CASCADE,
    log_type               text             NOT NULL DEFAULT 'daily',
    period                 date             NOT NULL,
    users_count            integer          NOT NULL DEFAULT 0,
    classes_count          integer          NOT NULL DEFAULT 0,
    storage_gb             double precision NOT NULL DEFAULT 0.0,
    api_calls_count        integer          NOT NULL DEFAULT 0,
    roblox_sessions_count  integer          NOT NULL DEFAULT 0,
    created_at             timestamptz      NOT NULL DEFAULT now(),

    CONSTRAINT usage_logs_organization_id_log_type_period_key
        UNIQUE (organization_id, log_type, period),
    CONSTRAINT usage_logs_log_type_value CHECK (log_type IN ('daily', 'weekly', 'monthly')),
    CONSTRAINT usage_logs_period_aligned CHECK (
        (log_type <> 'weekly' OR extract(isodow FROM period) = 1)
        AND (log_type <> 'monthly' OR extract(day FROM period) = 1)),
    CONSTRAINT usage_logs_counters_nonnegative CHECK (
        users_count >= 0 AND classes_count >= 0 AND api_calls_count >= 0
        AND roblox_sessions_count >= 0 AND storage_gb >= 0 AND storage_gb < 'Infinity')
);

-- Ledger of UsageService.RecordUsage (and of internal counter changes). A retry with the same
-- request_id hits the unique index, and the service answers from the recorded row.
CREATE TABLE usage_events (
    id               uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid             NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    metric           text             NOT NULL,
    delta            double precision NOT NULL,
    -- counter value after this event was applied
    value_after      double precision NOT NULL,
    request_id       text,
    actor_id         text,
    created_at       timestamptz      NOT NULL DEFAULT now(),

    CONSTRAINT usage_events_metric_value CHECK (
        metric IN ('users', 'classes', 'storage_gb', 'api_calls', 'roblox_sessions')),
    CONSTRAINT usage_events_delta_finite CHECK (delta > '-Infinity' AND delta < 'Infinity'),
    CONSTRAINT usage_events_value_after_nonnegative CHECK (
        value_after >= 0 AND value_after < 'Infinity'),
    CONSTRAINT usage_events_request_id_length CHECK (char_length(request_id) BETWEEN 1 AND 128)
);

CREATE UNIQUE INDEX usage_events_organization_id_request_id_key
    ON usage_events (organization_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX usage_events_organization_id_created_at_idx
    ON usage_events (organization_id, created_at);

-------------------------------------------------------------------------------------------------
-- tenant configuration (owned by tenant-settings)
-------------------------------------------------------------------------------------------------

-- One row per tenant. Branding as typed columns; security and compliance as jsonb objects whose
-- known keys are type- and range-checked (CASE guarantees the cast only runs on numbers).
-- `version` is for optimistic concurrency: writers set `version = version + 1` and may
-- compare it; no trigger touches it.
CREATE TABLE tenant_settings (
    organization_id  uuid        PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    timezone         text        NOT NULL DEFAULT 'UTC',
    locale           text        NOT NULL DEFAULT 'en-US',
    -- branding
    logo_url         text,
    primary_color    text,
    secondary_color  text,
    custom_domain    text,
    -- {sso_enabled, session_timeout_minutes, password_expiry_days, max_login_attempts,
    --  enable_two_factor}; further keys allowed.
    security         jsonb       NOT NULL DEFAULT '{"sso_enabled": false,
                                                     "session_timeout_minutes": 60,
                                                     "password_expiry_days": 90,
                                                     "max_login_attempts": 5,
                                                     "enable_two_factor": false}',
    -- {coppa_compliance_required, ferpa_compliance_required, require_parental_consent,
    --  data_retention_days, audit_logs_enabled}; further keys allowed.
    compliance       jsonb       NOT NULL DEFAULT '{"coppa_compliance_required": true,
                                                     "ferpa_compliance_required": false,
                                                     "require_parental_consent": true,
                                                     "data_retention_days": 365,
                                                     "audit_logs_enabled": true}',
    -- free-form tenant settings (UpdateCustomSettings), at most 64 KiB as rendered by
    -- jsonb::text (which puts a space after ':' and ','; compact JSON is never longer).
    custom_settings  jsonb       NOT NULL DEFAULT '{}',
    version          bigint      NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT tenant_settings_timezone_length CHECK (char_length(timezone) BETWEEN 1 AND 100),
    CONSTRAINT tenant_settings_locale_format CHECK (
        char_length(locale) BETWEEN 2 AND 10 AND locale ~ '^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$'),
    CONSTRAINT tenant_settings_logo_url_length CHECK (char_length(logo_url) <= 500),
    CONSTRAINT tenant_settings_primary_color_format CHECK (primary_color ~ '^#[0-9A-Fa-f]{6}$'),
    CONSTRAINT tenant_settings_secondary_color_format CHECK (
        secondary_color ~ '^#[0-9A-Fa-f]{6}$'),
    CONSTRAINT tenant_settings_custom_domain_length CHECK (char_length(custom_domain) <= 255),
    CONSTRAINT tenant_settings_security_shape CHECK (
        jsonb_typeof(security) = 'object'
        AND coalesce(jsonb_typeof(security -> 'sso_enabled'), 'boolean') = 'boolean'
        AND coalesce(jsonb_typeof(security -> 'enable_two_factor'), 'boolean') = 'boolean'
        AND CASE jsonb_typeof(security -> 'session_timeout_minutes')
                WHEN 'number' THEN (security ->> 'session_timeout_minutes')::numeric > 0
                ELSE security -> 'session_timeout_minutes' IS NULL END
        AND CASE jsonb_typeof(security -> 'password_expiry_days')
                WHEN 'number' THEN (security ->> 'password_expiry_days')::numeric >= 0
                ELSE security -> 'password_expiry_days' IS NULL END
        AND CASE jsonb_typeof(security -> 'max_login_attempts')
                WHEN 'number' THEN (security ->> 'max_login_attempts')::numeric > 0
                ELSE security -> 'max_login_attempts' IS NULL END),
    CONSTRAINT tenant_settings_compliance_shape CHECK (
        jsonb_typeof(compliance) = 'object'
        AND coalesce(jsonb_typeof(compliance -> 'coppa_compliance_required'), 'boolean') = 'boolean'
        AND coalesce(jsonb_typeof(compliance -> 'ferpa_compliance_required'), 'boolean') = 'boolean'
        AND coalesce(jsonb_typeof(compliance -> 'require_parental_consent'), 'boolean') = 'boolean'
        AND coalesce(jsonb_typeof(compliance -> 'audit_logs_enabled'), 'boolean') = 'boolean'
        AND CASE jsonb_typeof(compliance -> 'data_retention_days')
                WHEN 'number' THEN (compliance ->> 'data_retention_days')::numeric > 0
                ELSE compliance -> 'data_retention_days' IS NULL END),
    CONSTRAINT tenant_settings_custom_settings_object CHECK (
        jsonb_typeof(custom_settings) = 'object'),
    CONSTRAINT tenant_settings_custom_settings_size CHECK (
        octet_length(custom_settings::text) <= 65536),
    CONSTRAINT tenant_settings_version_positive CHECK (version >= 1)
);

-- Explicit per-tenant feature state. Absence of a row means "no decision stored"; the
-- services derive the tier defaults from the §3.1 matrix (data in the services). `source`
-- says who decided: the tier defaults, an org admin toggle (only within the tier), or a
-- super-admin override (may grant a feature outside the tier).
CREATE TABLE tenant_features (
    organization_id  uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    feature          text        NOT NULL,
    enabled          boolean     NOT NULL,
    source           text        NOT NULL DEFAULT 'tier_default',
    updated_by       uuid,
    updated_at       timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (organization_id, feature),
    CONSTRAINT tenant_features_feature_value CHECK (feature IN (
        'ai_chat', 'roblox_integration', 'advanced_analytics', 'custom_branding', 'sso',
        'api_access', 'webhooks', 'advanced_security', 'parent_portal', 'mobile_app',
        'gamification', 'assessment_builder', 'content_versioning', 'live_classes',
        'video_conferencing')),
    CONSTRAINT tenant_features_source_value CHECK (
        source IN ('tier_default', 'org_admin', 'operator_override'))
);

-- Third-party integrations. `secrets` is write-only at the API: GetIntegrations reports which
-- keys are set, never their values.
CREATE TABLE integrations (
    organization_id  uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             text        NOT NULL,
    enabled          boolean     NOT NULL DEFAULT false,
    config           jsonb       NOT NULL DEFAULT '{}',
    secrets          jsonb       NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (organization_id, name),
    CONSTRAINT integrations_name_format CHECK (
        char_length(name) BETWEEN 1 AND 100 AND name ~ '^[a-z0-9][a-z0-9_.-]*$'),
    CONSTRAINT integrations_config_object CHECK (
        jsonb_typeof(config) = 'object' AND octet_length(config::text) <= 65536),
    CONSTRAINT integrations_secrets_object CHECK (
        jsonb_typeof(secrets) = 'object' AND octet_length(secrets::text) <= 65536)
);

-------------------------------------------------------------------------------------------------
-- provisioning (owned by provisioning)
-------------------------------------------------------------------------------------------------

-- A persisted provisioning saga. Terminal statuses use the result vocabulary of the API
-- (success, partial_success, failed, already_provisioned). A worker claims a job by setting
-- lease_owner / lease_expires_at (SELECT ... FOR UPDATE SKIP LOCKED on expired leases).
-- `params` holds the request options (never a password); `result` the final outcome (never
-- the one-time admin password, which is returned once and not stored).
CREATE TABLE provisioning_jobs (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    request_id        text,
    status            text        NOT NULL DEFAULT 'pending',
    params            jsonb       NOT NULL DEFAULT '{}',
    result            jsonb,
    lease_owner       text,
    lease_expires_at  timestamptz,
    attempts          integer     NOT NULL DEFAULT 0,
    error             text,
    requested_by      text,
    started_at        timestamptz,
    finished_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT provisioning_jobs_organization_id_id_key UNIQUE (organization_id, id),
    CONSTRAINT provisioning_jobs_status_value CHECK (status IN (
        'pending', 'running', 'success', 'partial_success', 'failed', 'already_provisioned')),
    CONSTRAINT provisioning_jobs_request_id_length CHECK (char_length(request_id) BETWEEN 1 AND 128),
    CONSTRAINT provisioning_jobs_params_object CHECK (jsonb_typeof(params) = 'object'),
    CONSTRAINT provisioning_jobs_attempts_nonnegative CHECK (attempts >= 0)
);

CREATE UNIQUE INDEX provisioning_jobs_organization_id_request_id_key
    ON provisioning_jobs (organization_id, request_id) WHERE request_id IS NOT NULL;
-- at most one unfinished job per tenant
CREATE UNIQUE INDEX provisioning_jobs_one_active_per_org_key
    ON provisioning_jobs (organization_id) WHERE status IN ('pending', 'running');
-- the resumer's scan
CREATE INDEX provisioning_jobs_active_lease_idx ON provisioning_jobs (lease_expires_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX provisioning_jobs_created_at_id_idx ON provisioning_jobs (created_at, id);

CREATE TABLE provisioning_steps (
    job_id           uuid        NOT NULL,
    organization_id  uuid        NOT NULL,
    name             text        NOT NULL,
    state            text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    started_at       timestamptz,
    finished_at      timestamptz,
    error            text,

    PRIMARY KEY (job_id, name),
    -- composite: a step always belongs to a job of its own tenant
    CONSTRAINT provisioning_steps_job_fkey FOREIGN KEY (organization_id, job_id)
        REFERENCES provisioning_jobs (organization_id, id) ON DELETE CASCADE,
    CONSTRAINT provisioning_steps_name_value CHECK (name IN (
        'admin_user_created', 'default_settings_initialized', 'default_features_configured',
        'organization_verified', 'welcome_email_sent')),
    CONSTRAINT provisioning_steps_state_value CHECK (
        state IN ('pending', 'running', 'done', 'failed', 'skipped')),
    CONSTRAINT provisioning_steps_attempts_nonnegative CHECK (attempts >= 0)
);

CREATE INDEX provisioning_steps_organization_id_job_id_idx
    ON provisioning_steps (organization_id, job_id);

-- Transactional outbox. The row is written in the same transaction as the change that causes
-- the e-mail; a relay sends it at least once. No secrets here: for `welcome` and
-- `password_reset` the relay mints the password token (password_tokens) at send time, for
-- `invitation` it mints the invitation token, using the ids in `payload`.
CREATE TABLE email_outbox (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id   uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- RFC 5322 Message-ID, derived from the id; lets duplicates be spotted downstream
    message_id        text        NOT NULL,
    kind              text        NOT NULL DEFAULT 'notification',
    to_address        text        NOT NULL,
    subject           text        NOT NULL,
    body_text         text        NOT NULL,
    payload           jsonb       NOT NULL DEFAULT '{}',
    status            text        NOT NULL DEFAULT 'pending',
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    sent_at           timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT email_outbox_message_id_key UNIQUE (message_id),
    CONSTRAINT email_outbox_kind_value CHECK (
        kind IN ('welcome', 'invitation', 'password_reset', 'notification')),
    CONSTRAINT email_outbox_to_address_format CHECK (
        char_length(to_address) <= 255 AND to_address ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT email_outbox_payload_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT email_outbox_status_value CHECK (status IN ('pending', 'sent', 'failed')),
    CONSTRAINT email_outbox_attempts_nonnegative CHECK (attempts >= 0),
    CONSTRAINT email_outbox_sent_has_time CHECK (status <> 'sent' OR sent_at IS NOT NULL)
);

-- the relay's scan: WHERE status = 'pending' AND next_attempt_at <= now() ... SKIP LOCKED
CREATE INDEX email_outbox_pending_next_attempt_at_idx ON email_outbox (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX email_outbox_organization_id_idx ON email_outbox (organization_id);

-------------------------------------------------------------------------------------------------
-- billing (owned by tenant-admin)
-------------------------------------------------------------------------------------------------

-- Amounts are integer minor units (cents), never floating point.
CREATE TABLE billing_invoices (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    invoice_number   text        NOT NULL,
    amount_cents     bigint      NOT NULL,
    currency         text        NOT NULL DEFAULT 'USD',
    status           text        NOT NULL DEFAULT 'pending',
    description      text,
    -- [{description, quantity, unit_amount_cents, amount_cents}, ...]
    line_items       jsonb       NOT NULL DEFAULT '[]',
    period_start     timestamptz,
    period_end       timestamptz,
    issued_at        timestamptz NOT NULL DEFAULT now(),
    due_at           timestamptz,
    paid_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT billing_invoices_organization_id_invoice_number_key
        UNIQUE (organization_id, invoice_number),
    CONSTRAINT billing_invoices_invoice_number_length CHECK (
        char_length(invoice_number) BETWEEN 1 AND 64),
    CONSTRAINT billing_invoices_amount_nonnegative CHECK (amount_cents >= 0),
    CONSTRAINT billing_invoices_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT billing_invoices_status_value CHECK (
        status IN ('paid', 'unpaid', 'overdue', 'pending')),
    CONSTRAINT billing_invoices_line_items_array CHECK (jsonb_typeof(line_items) = 'array'),
    CONSTRAINT billing_invoices_period_window CHECK (period_end >= period_start),
    CONSTRAINT billing_invoices_paid_has_time CHECK (status <> 'paid' OR paid_at IS NOT NULL)
);

CREATE INDEX billing_invoices_organization_id_issued_at_id_idx
    ON billing_invoices (organization_id, issued_at DESC, id DESC);

-- Stored references only: never a card number or CVC. `external_ref` is the payment
-- processor's opaque id for the method.
CREATE TABLE payment_methods (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    type             text        NOT NULL,
    brand            text,
    last4            text,
    exp_month        integer,
    exp_year         integer,
    is_default       boolean     NOT NULL DEFAULT false,
    external_ref     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT payment_methods_type_value CHECK (type IN ('card', 'bank_account', 'paypal')),
    CONSTRAINT payment_methods_brand_length CHECK (char_length(brand) <= 50),
    CONSTRAINT payment_methods_last4_format CHECK (last4 ~ '^[0-9]{4}$'),
    CONSTRAINT payment_methods_exp_month_range CHECK (exp_month BETWEEN 1 AND 12),
    CONSTRAINT payment_methods_exp_year_range CHECK (exp_year BETWEEN 2000 AND 2100),
    CONSTRAINT payment_methods_expiry_pair CHECK ((exp_month IS NULL) = (exp_year IS NULL)),
    CONSTRAINT payment_methods_external_ref_length CHECK (char_length(external_ref) <= 255)
);

-- at most one default method per tenant; SetDefaultPaymentMethod clears the old default
-- first, in the same transaction.
CREATE UNIQUE INDEX payment_methods_one_default_per_org_key
    ON payment_methods (organization_id) WHERE is_default;
CREATE INDEX payment_methods_organization_id_created_at_idx
    ON payment_methods (organization_id, created_at);

-------------------------------------------------------------------------------------------------
-- idempotency_keys (AIP-155 request_id; every service)
-------------------------------------------------------------------------------------------------
-- Claimed with INSERT ... ON CONFLICT DO NOTHING; `request_hash` detects the same key with a
-- different payload, `response` is the serialized first response. `organization_id` is the
-- tenant the request acted on, or NULL for platform-scoped requests (CreateTenant before the
-- tenant exists): under the tenant policy, NULL rows are visible in platform mode only.
-- The key is global per method (not per tenant), so services should use uuid request ids;
-- a FK cascade removes a tenant's cached responses on hard delete.
CREATE TABLE idempotency_keys (
    method           text        NOT NULL,
    key              text        NOT NULL,
    organization_id  uuid        REFERENCES organizations (id) ON DELETE CASCADE,
    request_hash     bytea       NOT NULL,
    response         bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (method, key),
    CONSTRAINT idempotency_keys_method_length CHECK (char_length(method) BETWEEN 1 AND 200),
    CONSTRAINT idempotency_keys_key_length CHECK (char_length(key) BETWEEN 1 AND 128)
);

-- expiry sweep
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_organization_id_idx ON idempotency_keys (organization_id);

-------------------------------------------------------------------------------------------------
-- audit_events (every service)
-------------------------------------------------------------------------------------------------
-- organization_id NULL = platform event, visible in platform mode only. A hard delete removes
-- the tenant's events with the tenant (FK cascade: no row of the tenant survives); the delete
-- itself is recorded as a platform event with target_type 'organization' and target_id = id.
-- actor_id is text: the token's `sub`, which for a service caller need not be a uuid.
CREATE TABLE audit_events (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid        REFERENCES organizations (id) ON DELETE CASCADE,
    actor_id         text,
    actor_role       text,
    action           text        NOT NULL,
    target_type      text,
    target_id        text,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    request_id       text,
    created_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT audit_events_action_length CHECK (char_length(action) BETWEEN 1 AND 200),
    CONSTRAINT audit_events_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

-- keyset pagination of ListAuditEvents, per tenant and platform-wide
CREATE INDEX audit_events_organization_id_created_at_id_idx
    ON audit_events (organization_id, created_at DESC, id DESC);
CREATE INDEX audit_events_created_at_id_idx ON audit_events (created_at DESC, id DESC);

-------------------------------------------------------------------------------------------------
-- backups (owned by provisioning; platform-scoped)
-------------------------------------------------------------------------------------------------
-- organization_id is deliberately NOT a foreign key: the backup taken before a hard delete must
-- outlive the tenant. Only super admins list and restore backups, so the RLS policy is
-- platform-only: a tenant transaction never sees its own backups either.
CREATE TABLE backups (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid        NOT NULL,
    path             text        NOT NULL,
    manifest         jsonb       NOT NULL DEFAULT '{}',
    -- hex SHA-256 of the backup file
    checksum         text        NOT NULL,
    size_bytes       bigint,
    created_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT backups_path_length CHECK (char_length(path) BETWEEN 1 AND 1024),
    CONSTRAINT backups_manifest_object CHECK (jsonb_typeof(manifest) = 'object'),
    CONSTRAINT backups_checksum_format CHECK (checksum ~ '^[0-9a-f]{64}$'),
    CONSTRAINT backups_size_bytes_nonnegative CHECK (size_bytes >= 0)
);

CREATE INDEX backups_organization_id_created_at_idx ON backups (organization_id, created_at);
CREATE INDEX backups_created_at_id_idx ON backups (created_at, id);

-------------------------------------------------------------------------------------------------
-- Triggers
-------------------------------------------------------------------------------------------------

CREATE TRIGGER organizations_set_updated_at BEFORE UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER invitations_set_updated_at BEFORE UPDATE ON invitations
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER tenant_settings_set_updated_at BEFORE UPDATE ON tenant_settings
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER tenant_features_set_updated_at BEFORE UPDATE ON tenant_features
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER integrations_set_updated_at BEFORE UPDATE ON integrations
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER provisioning_jobs_set_updated_at BEFORE UPDATE ON provisioning_jobs
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER billing_invoices_set_updated_at BEFORE UPDATE ON billing_invoices
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();
CREATE TRIGGER payment_methods_set_updated_at BEFORE UPDATE ON payment_methods
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();

-- Change notifications for the feature/limit cache. On organizations only the columns that
-- CheckFeatures / GetLimits / WatchTenant expose, and only when one of them really changed.
-- Usage counters are among them, so every committed usage change notifies: batch RecordUsage
-- deltas (e.g. API calls) rather than committing one per call.
CREATE TRIGGER organizations_notify_insert_delete AFTER INSERT OR DELETE ON organizations
    FOR EACH ROW EXECUTE FUNCTION tenantry_notify_tenant_changed('id');
CREATE TRIGGER organizations_notify_update
    AFTER UPDATE OF status, subscription_tier, is_active, deleted_at,
        max_users, max_classes, max_storage_gb, max_api_calls_per_month, max_roblox_sessions,
        current_users, current_classes, current_storage_gb, current_api_calls_this_month,
        current_roblox_sessions
    ON organizations
    FOR EACH ROW
    WHEN ((OLD.status, OLD.subscription_tier, OLD.is_active, OLD.deleted_at,
           OLD.max_users, OLD.max_classes, OLD.max_storage_gb, OLD.max_api_calls_per_month,
           OLD.max_roblox_sessions, OLD.current_users, OLD.current_classes,
           OLD.current_storage_gb, OLD.current_api_calls_this_month, OLD.current_roblox_sessions)
          IS DISTINCT FROM
          (NEW.status, NEW.subscription_tier, NEW.is_active, NEW.deleted_at,
           NEW.max_users, NEW.max_classes, NEW.max_storage_gb, NEW.max_api_calls_per_month,
           NEW.max_roblox_sessions, NEW.current_users, NEW.current_classes,
           NEW.current_storage_gb, NEW.current_api_calls_this_month, NEW.current_roblox_sessions))
    EXECUTE FUNCTION tenantry_notify_tenant_changed('id');
CREATE TRIGGER tenant_settings_notify AFTER INSERT OR UPDATE OR DELETE ON tenant_settings
    FOR EACH ROW EXECUTE FUNCTION tenantry_notify_tenant_changed('organization_id');
CREATE TRIGGER tenant_features_notify AFTER INSERT OR UPDATE OR DELETE ON tenant_features
    FOR EACH ROW EXECUTE FUNCTION tenantry_notify_tenant_changed('organization_id');
CREATE TRIGGER integrations_notify AFTER INSERT OR UPDATE OR DELETE ON integrations
    FOR EACH ROW EXECUTE FUNCTION tenantry_notify_tenant_changed('organization_id');

-------------------------------------------------------------------------------------------------
-- Row-level security
-------------------------------------------------------------------------------------------------
-- FORCE makes the policies apply to the owner too (only superusers and BYPASSRLS roles skip
-- them). One permissive policy per table, for all commands; WITH CHECK repeats USING so a row
-- can be neither written into nor moved to another tenant. Foreign-key checks and cascades run
-- without RLS (Postgres internals), so cascading deletes from organizations remove every row.
-- With neither GUC set a transaction sees no rows at all.

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (tenantry_is_platform() OR id = tenantry_current_tenant())
    WITH CHECK (tenantry_is_platform() OR id = tenantry_current_tenant());

-- The same policy on every table keyed by organization_id.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'users', 'invitations', 'password_tokens', 'usage_logs', 'usage_events',
        'tenant_settings', 'tenant_features', 'integrations', 'provisioning_jobs',
        'provisioning_steps', 'email_outbox', 'billing_invoices', 'payment_methods',
        'idempotency_keys', 'audit_events']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I '
            'USING (tenantry_is_platform() OR organization_id = tenantry_current_tenant()) '
            'WITH CHECK (tenantry_is_platform() OR organization_id = tenantry_current_tenant())',
            t);
    END LOOP;
END
$$;

-- backups: platform only (see the table comment).
ALTER TABLE backups ENABLE ROW LEVEL SECURITY;
ALTER TABLE backups FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON backups
    USING (tenantry_is_platform())
    WITH CHECK (tenantry_is_platform());

-------------------------------------------------------------------------------------------------
-- Privileges for the service role
-------------------------------------------------------------------------------------------------
-- Table by table rather than ON ALL TABLES, which would include __diesel_schema_migrations.
-- Later migrations grant on the tables they create (no ALTER DEFAULT PRIVILEGES, so that no
-- table gets privileges implicitly).

GRANT USAGE ON SCHEMA public TO tenantry_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON
    organizations, users, invitations, password_tokens, usage_logs, usage_events,
    tenant_settings, tenant_features, integrations, provisioning_jobs, provisioning_steps,
    email_outbox, billing_invoices, payment_methods, idempotency_keys, backups
    TO tenantry_app;

-- Audit events are never edited: no UPDATE. DELETE stays for retention purges.
GRANT SELECT, INSERT, DELETE ON audit_events TO tenantry_app;

-- No table uses a sequence today; kept so a serial column added here later is usable.
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO tenantry_app;

-- The policy helpers run as the querying role, so tenantry_app needs EXECUTE; nobody else does.
-- (Trigger functions need no EXECUTE grant to fire.)
REVOKE ALL ON FUNCTION tenantry_current_tenant() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry_is_platform() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry_set_updated_at() FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantry_notify_tenant_changed() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantry_current_tenant() TO tenantry_app;
GRANT EXECUTE ON FUNCTION tenantry_is_platform() TO tenantry_app;

-- Read-only access to the migration ledger (it exists when Diesel runs this file, not when the
-- file is applied by hand with psql).
DO $$
BEGIN
    IF to_regclass('public.__diesel_schema_migrations') IS NOT NULL THEN
        GRANT SELECT ON __diesel_schema_migrations TO tenantry_app;
    END IF;
END
$$;
