#!/usr/bin/env python3
"""A Tenantry client in Python: log in, list tenants, check features.

It talks native gRPC to tenant-admin (Login, ListTenants) and tenant-settings (CheckFeatures)
through stubs generated from ../../proto by grpcio-tools (see README.md: they are generated into
./gen, or into $TENANTRY_PY_GEN, and never committed).

Two identities, each optional, at least one required:

- a platform super admin (e-mail and password; Login with an empty tenant slug), who lists
  the tenants;
- a user of one tenant (tenant slug, username or e-mail, password), whose token checks features
  of its own tenant with CheckFeatures, the call every backend service makes.

Passwords are best given in the environment (TENANTRY_SUPER_ADMIN_PASSWORD, TENANTRY_PASSWORD)
rather than on the command line, where other local users can see them.

A failed call prints its gRPC status code and message and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

GEN = Path(os.environ.get("TENANTRY_PY_GEN") or Path(__file__).resolve().parent / "gen")
sys.path.insert(0, str(GEN))

try:
    import grpc
    from tenantry.admin.v1 import auth_pb2, auth_pb2_grpc, tenants_pb2, tenants_pb2_grpc
    from tenantry.common.v1 import common_pb2
    from tenantry.settings.v1 import settings_pb2, settings_pb2_grpc
except ImportError as e:
    sys.exit(
        f"cannot import grpc or the generated stubs from {GEN} ({e}): "
        "install requirements.txt and run the generate step of README.md"
    )

# Deadline of every call, in seconds.
TIMEOUT = 10.0


class CallFailed(Exception):
    """A gRPC call failed; carries the RPC name and the status."""

    def __init__(self, rpc: str, error: grpc.RpcError):
        super().__init__(rpc)
        self.rpc = rpc
        self.code = error.code()
        self.details = error.details()

    def __str__(self) -> str:
        return f"{self.rpc} failed: {self.code.name}: {self.details}"


def call(rpc: str, method, request, token: str | None = None):
    """Calls `method` with a deadline and, when given, a bearer token."""
    metadata = [("authorization", f"Bearer {token}")] if token else None
    try:
        return method(request, timeout=TIMEOUT, metadata=metadata)
    except grpc.RpcError as e:
        raise CallFailed(rpc, e) from None


def login(channel: grpc.Channel, slug: str, user: str, password: str):
    """Signs in; `user` is an e-mail address when it contains '@', else a username."""
    request = auth_pb2.LoginRequest(tenant_slug=slug, password=password)
    if "@" in user:
        request.email = user
    else:
        request.username = user
    return call("Login", auth_pb2_grpc.AuthServiceStub(channel).Login, request)


def list_tenants(channel: grpc.Channel, token: str, query: str) -> None:
    """Prints every tenant matching `query`, page by page."""
    stub = tenants_pb2_grpc.TenantAdminServiceStub(channel)
    page_token, shown = "", 0
    while True:
        page = call(
            "ListTenants",
            stub.ListTenants,
            tenants_pb2.ListTenantsRequest(page_size=50, page_token=page_token, query=query),
            token,
        )
        if not page_token:
            print(f"tenants: {page.total_size}")
        for t in page.tenants:
            shown += 1
            status = common_pb2.TenantStatus.Name(t.status)
            tier = common_pb2.SubscriptionTier.Name(t.subscription_tier)
            print(f"  tenant {t.slug} {status} {tier} {t.tenant_id}")
        page_token = page.next_page_token
        if not page_token:
            break
    print(f"listed {shown} tenant(s)")


def feature_of(name: str) -> int:
    """FEATURE_AI_CHAT, or ai_chat, → the Feature enum value."""
    full = name.upper()
    if not full.startswith("FEATURE_"):
        full = "FEATURE_" + full
    try:
        return common_pb2.Feature.Value(full)
    except ValueError:
        known = ", ".join(n for n in common_pb2.Feature.keys() if n != "FEATURE_UNSPECIFIED")
        sys.exit(f"unknown feature {name!r}; one of: {known}")


def check_features(channel: grpc.Channel, token: str, slug: str, features: list[str]) -> None:
    """Prints whether the token's tenant has each feature (all 15 when none are named)."""
    stub = settings_pb2_grpc.TenantSettingsServiceStub(channel)
    answer = call(
        "CheckFeatures",
        stub.CheckFeatures,
        settings_pb2.CheckFeaturesRequest(features=[feature_of(f) for f in features]),
        token,
    )
    status = common_pb2.TenantStatus.Name(answer.status)
    tier = common_pb2.SubscriptionTier.Name(answer.subscription_tier)
    print(f"features of {slug} ({status}, {tier}, version {answer.version}):")
    for check in answer.features:
        state = "enabled" if check.enabled else "disabled"
        print(f"  {common_pb2.Feature.Name(check.feature)} {state}")


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--admin", default=env("TENANTRY_ADMIN_ADDR", "127.0.0.1:50051"),
                   help="tenant-admin address (TENANTRY_ADMIN_ADDR)")
    p.add_argument("--settings", default=env("TENANTRY_SETTINGS_ADDR", "127.0.0.1:50052"),
                   help="tenant-settings address (TENANTRY_SETTINGS_ADDR)")
    p.add_argument("--super-admin-email", default=env("TENANTRY_SUPER_ADMIN_EMAIL", ""),
                   help="platform super admin who lists tenants (TENANTRY_SUPER_ADMIN_EMAIL)")
    p.add_argument("--super-admin-password", default=env("TENANTRY_SUPER_ADMIN_PASSWORD", ""),
                   help="their password (TENANTRY_SUPER_ADMIN_PASSWORD)")
    p.add_argument("--query", default="", help="only tenants whose name, slug or e-mail contain this")
    p.add_argument("--tenant", default=env("TENANTRY_TENANT", ""),
                   help="slug of the tenant to sign in to (TENANTRY_TENANT)")
    p.add_argument("--username", default=env("TENANTRY_USERNAME", ""),
                   help="username or e-mail of a user of that tenant (TENANTRY_USERNAME)")
    p.add_argument("--password", default=env("TENANTRY_PASSWORD", ""),
                   help="their password (TENANTRY_PASSWORD)")
    p.add_argument("--feature", action="append", default=[],
                   help="feature to check, e.g. FEATURE_AI_CHAT or ai_chat (repeatable; default all)")
    args = p.parse_args()
    as_admin = bool(args.super_admin_email)
    as_member = bool(args.tenant or args.username)
    if not (as_admin or as_member):
        p.error("give --super-admin-email and/or --tenant with --username")
    if as_admin and not args.super_admin_password:
        p.error("--super-admin-email needs --super-admin-password (or TENANTRY_SUPER_ADMIN_PASSWORD)")
    if as_member and not (args.tenant and args.username and args.password):
        p.error("a tenant user needs --tenant, --username and --password (or TENANTRY_PASSWORD)")
    return args


def main() -> int:
    args = parse_args()
    try:
        if args.super_admin_email:
            with grpc.insecure_channel(args.admin) as channel:
                signed_in = login(channel, "", args.super_admin_email, args.super_admin_password)
                print(f"signed in as super admin {args.super_admin_email} (user {signed_in.user_id})")
                list_tenants(channel, signed_in.access_token, args.query)
        if args.tenant:
            with grpc.insecure_channel(args.admin) as channel:
                signed_in = login(channel, args.tenant, args.username, args.password)
            role = common_pb2.OrgRole.Name(signed_in.org_role)
            print(f"signed in to {args.tenant} as {args.username}, {role} (user {signed_in.user_id})")
            with grpc.insecure_channel(args.settings) as channel:
                check_features(channel, signed_in.access_token, args.tenant, args.feature)
    except CallFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
