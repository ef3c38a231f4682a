-- Reverts 2026-11-27-000001_initial: drops everything up.sql creates, in reverse order.
-- Dropping a table also drops its indexes, constraints, triggers, policies and grants.

DO $$
BEGIN
    IF to_regclass('public.__diesel_schema_migrations') IS NOT NULL THEN
        REVOKE SELECT ON __diesel_schema_migrations FROM tenantry_app;
    END IF;
END
$$;

DROP TABLE backups;
DROP TABLE audit_events;
DROP TABLE idempotency_keys;
DROP TABLE payment_methods;
DROP TABLE billing_invoices;
DROP TABLE email_outbox;
DROP TABLE provisioning_steps;
DROP TABLE provisioning_jobs;
DROP TABLE integrations;
DROP TABLE tenant_features;
DROP TABLE tenant_settings;
DROP TABLE usage_events;
DROP TABLE usage_logs;
DROP TABLE password_tokens;
DROP TABLE invitations;
DROP TABLE users;
DROP TABLE organizations;

DROP FUNCTION tenantry_notify_tenant_changed();
DROP FUNCTION tenantry_set_updated_at();
DROP FUNCTION tenantry_is_platform();
DROP FUNCTION tenantry_current_tenant();

REVOKE USAGE ON SCHEMA public FROM tenantry_app;
