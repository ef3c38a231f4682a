-- Reverts 2026-11-27-000003_settings_extras. The theme goes back into custom_settings (where a
-- tenant's own "default_theme" key, if any, wins); custom CSS is dropped with its column.

SELECT set_config('tenantry.platform', 'on', false);

DROP TRIGGER organizations_bump_settings_version ON organizations;
DROP FUNCTION tenantry_bump_settings_version();

DROP INDEX tenant_settings_custom_domain_unique;

UPDATE tenant_settings
SET custom_settings = jsonb_build_object('default_theme', default_theme) || custom_settings
WHERE default_theme IS NOT NULL;

ALTER TABLE tenant_settings
    DROP CONSTRAINT tenant_settings_default_theme_length,
    DROP CONSTRAINT tenant_settings_custom_css_length,
    DROP COLUMN default_theme,
    DROP COLUMN custom_css;

SELECT set_config('tenantry.platform', '', false);
