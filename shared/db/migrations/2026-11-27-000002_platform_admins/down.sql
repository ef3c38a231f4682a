-- Reverts 2026-11-27-000002_platform_admins. Dropping the table also drops its index,
-- constraints, trigger, policy and grants.

DROP TABLE platform_admins;
