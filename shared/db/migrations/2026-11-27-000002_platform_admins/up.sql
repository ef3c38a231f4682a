-- Tenantry: platform (super) admin accounts.
--
-- The people who sign in with an empty tenant slug and get a `super_admin` token. They belong
-- to no tenant, so the table has no `organization_id`: it is visible in platform mode only
-- (the same `platform_only` policy as `backups`). The first account is created by
-- `tenantctl create-super-admin`; AuthService.Login reads and updates the rows.
-- Conventions as in 2026-11-27-000001_initial (runs as `tenantry_owner`, named CHECKs).

CREATE TABLE platform_admins (
    id                     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email                  text        NOT NULL,
    -- bcrypt hash; never logged or returned.
    password_hash          text        NOT NULL,
    failed_login_attempts  integer     NOT NULL DEFAULT 0,
    locked_until           timestamptz,
    last_login_at          timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT platform_admins_email_format CHECK (
        char_length(email) <= 255 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    CONSTRAINT platform_admins_failed_login_attempts_nonnegative CHECK (failed_login_attempts >= 0)
);

-- case-insensitive uniqueness; a duplicate raises 23505 with the index name.
CREATE UNIQUE INDEX platform_admins_lower_email_key ON platform_admins (lower(email));

COMMENT ON TABLE platform_admins IS
    'Platform (super) admin accounts: login with an empty tenant slug. Platform mode only.';
COMMENT ON COLUMN platform_admins.password_hash IS 'bcrypt hash; never logged or returned.';
COMMENT ON COLUMN platform_admins.failed_login_attempts IS
    'Consecutive failed logins; 5 lock the account for 30 minutes (locked_until).';

CREATE TRIGGER platform_admins_set_updated_at BEFORE UPDATE ON platform_admins
    FOR EACH ROW EXECUTE FUNCTION tenantry_set_updated_at();

ALTER TABLE platform_admins ENABLE ROW LEVEL SECURITY;
ALTER TABLE platform_admins FORCE ROW LEVEL SECURITY;
CREATE POLICY platform_only ON platform_admins
    USING (tenantry_is_platform())
    WITH CHECK (tenantry_is_platform());

GRANT SELECT, INSERT, UPDATE, DELETE ON platform_admins TO tenantry_app;
