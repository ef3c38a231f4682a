-- Reverts 2026-11-27-000004_rls_initplan: the per-row form of the policies of migration 1.

ALTER POLICY tenant_isolation ON organizations
    USING (tenantry_is_platform() OR id = tenantry_current_tenant())
    WITH CHECK (tenantry_is_platform() OR id = tenantry_current_tenant());

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
        EXECUTE format(
            'ALTER POLICY tenant_isolation ON %I '
            'USING (tenantry_is_platform() OR organization_id = tenantry_current_tenant()) '
            'WITH CHECK (tenantry_is_platform() OR organization_id = tenantry_current_tenant())',
            t);
    END LOOP;
END
$$;

ALTER POLICY platform_only ON backups
    USING (tenantry_is_platform())
    WITH CHECK (tenantry_is_platform());

ALTER POLICY platform_only ON platform_admins
    USING (tenantry_is_platform())
    WITH CHECK (tenantry_is_platform());
