-- Tenantry: tenant_settings extras (owned by tenant-settings).
--
-- * Custom domains are unique across tenants, case-insensitively. tenant-settings also checks
--   first (under an advisory lock, to answer ALREADY_EXISTS naming the field); the index is the
--   guarantee.
-- * Branding gets typed columns for `custom_css` (at most 64 KiB) and `default_theme` (1 to 50
--   characters; NULL shows as the default "roblox"). The theme used to be kept in
--   custom_settings under "default_theme": it moves to the column.
-- * A change of an organization's status, tier or limits bumps tenant_settings.version, so every
--   change a WatchTenant stream reports comes with a higher version.
--
-- Runs as `tenantry_owner`, which is subject to FORCE ROW LEVEL SECURITY like everyone else: the
-- data move below runs in platform mode, which is switched off again at the end.

SELECT set_config('tenantry.platform', 'on', false);

ALTER TABLE tenant_settings
    ADD COLUMN custom_css    text,
    ADD COLUMN default_theme text,
    ADD CONSTRAINT tenant_settings_custom_css_length CHECK (octet_length(custom_css) <= 65536),
    ADD CONSTRAINT tenant_settings_default_theme_length CHECK (
        char_length(default_theme) BETWEEN 1 AND 50);

UPDATE tenant_settings
SET default_theme = custom_settings ->> 'default_theme',
    custom_settings = custom_settings - 'default_theme'
WHERE jsonb_typeof(custom_settings -> 'default_theme') = 'string'
  AND char_length(custom_settings ->> 'default_theme') BETWEEN 1 AND 50;

CREATE UNIQUE INDEX tenant_settings_custom_domain_unique
    ON tenant_settings (lower(custom_domain))
    WHERE custom_domain IS NOT NULL;

-- Runs as the updating caller (SECURITY INVOKER), under RLS: the services update organizations
-- in platform scope or in the tenant's own scope, and both see (and may insert) the tenant's
-- settings row. A tenant without a settings row gets one with the column defaults (version 1,
-- above the 0 a missing row reads as).
CREATE FUNCTION tenantry_bump_settings_version() RETURNS trigger
    LANGUAGE plpgsql SECURITY INVOKER
    AS $$
BEGIN
    INSERT INTO tenant_settings (organization_id) VALUES (NEW.id)
    ON CONFLICT (organization_id) DO UPDATE SET version = tenant_settings.version + 1;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION tenantry_bump_settings_version() IS
    'Bumps tenant_settings.version when an organization''s status, tier or limits change.';

REVOKE ALL ON FUNCTION tenantry_bump_settings_version() FROM PUBLIC;

CREATE TRIGGER organizations_bump_settings_version
    AFTER UPDATE OF status, subscription_tier, deleted_at,
        max_users, max_classes, max_storage_gb, max_api_calls_per_month, max_roblox_sessions
    ON organizations
    FOR EACH ROW
    WHEN ((OLD.status, OLD.subscription_tier, OLD.deleted_at,
           OLD.max_users, OLD.max_classes, OLD.max_storage_gb, OLD.max_api_calls_per_month,
           OLD.max_roblox_sessions)
          IS DISTINCT FROM
          (NEW.status, NEW.subscription_tier, NEW.deleted_at,
           NEW.max_users, NEW.max_classes, NEW.max_storage_gb, NEW.max_api_calls_per_month,
           NEW.max_roblox_sessions))
    EXECUTE FUNCTION tenantry_bump_settings_version();

SELECT set_config('tenantry.platform', '', false);
