// The grpc-web clients of the three services, the session token they all carry, and errors in
// words.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

import { AuditService } from "./gen/tenantry/admin/v1/audit_pb";
import { AuthService } from "./gen/tenantry/admin/v1/auth_pb";
import { OrganizationService } from "./gen/tenantry/admin/v1/organizations_pb";
import { TenantAdminService } from "./gen/tenantry/admin/v1/tenants_pb";
import { ProvisioningService } from "./gen/tenantry/provisioning/v1/provisioning_pb";
import { TenantSettingsService } from "./gen/tenantry/settings/v1/settings_pb";

/** Who is signed in. Kept in sessionStorage: closing the tab signs out. */
export interface Session {
  token: string;
  /** Empty for a platform super admin. */
  tenantId: string;
  tenantSlug: string;
  login: string;
  superAdmin: boolean;
  expiresAt: number;
}

const SESSION_KEY = "tenantry.session";

export function loadSession(): Session | null {
  const raw = sessionStorage.getItem(SESSION_KEY);
  if (!raw) return null;
  try {
    const s = JSON.parse(raw) as Session;
    return s.expiresAt > Date.now() ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
}

/** Sends the signed-in user's token with every call, to every service. */
const bearer: Interceptor = (next) => async (req) => {
  const s = loadSession();
  if (s) req.header.set("authorization", `Bearer ${s.token}`);
  return next(req);
};

/** Where the browser reaches tenant-settings and provisioning (served by tenant-admin). */
interface ConsoleConfig {
  settingsUrl: string;
  provisioningUrl: string;
}

export interface Clients {
  auth: Client<typeof AuthService>;
  tenants: Client<typeof TenantAdminService>;
  orgs: Client<typeof OrganizationService>;
  audit: Client<typeof AuditService>;
  settings: Client<typeof TenantSettingsService>;
  provisioning: Client<typeof ProvisioningService>;
}

export async function connect(): Promise<Clients> {
  const res = await fetch("config.json", { cache: "no-store" });
  if (!res.ok) throw new Error(`cannot read config.json (${res.status})`);
  const config = (await res.json()) as ConsoleConfig;
  const transport = (baseUrl: string) =>
    createGrpcWebTransport({ baseUrl, interceptors: [bearer], defaultTimeoutMs: 30_000 });
  const admin = transport(window.location.origin);
  const settings = transport(config.settingsUrl);
  const provisioning = transport(config.provisioningUrl);
  return {
    auth: createClient(AuthService, admin),
    tenants: createClient(TenantAdminService, admin),
    orgs: createClient(OrganizationService, admin),
    audit: createClient(AuditService, admin),
    settings: createClient(TenantSettingsService, settings),
    provisioning: createClient(ProvisioningService, provisioning),
  };
}

/** One google.rpc.BadRequest field violation. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** Reads google.rpc.BadRequest (field_violations = 1: {field = 1, description = 2}). */
function decodeBadRequest(bytes: Uint8Array): FieldViolation[] {
  const out: FieldViolation[] = [];
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1 || wt !== WireType.LengthDelimited) {
      r.skip(wt);
      continue;
    }
    const v = new BinaryReader(r.bytes());
    const fv: FieldViolation = { field: "", description: "" };
    while (v.pos < v.len) {
      const [n, w] = v.tag();
      if (n === 1 && w === WireType.LengthDelimited) fv.field = v.string();
      else if (n === 2 && w === WireType.LengthDelimited) fv.description = v.string();
      else v.skip(w);
    }
    out.push(fv);
  }
  return out;
}

const CODE_WORDS: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: "Invalid input",
  [Code.NotFound]: "Not found",
  [Code.AlreadyExists]: "Already exists",
  [Code.PermissionDenied]: "Permission denied: your role may not do this",
  [Code.Unauthenticated]: "Not authenticated",
  [Code.FailedPrecondition]: "Not possible in the current state",
  [Code.ResourceExhausted]: "Limit reached",
  [Code.Unavailable]: "The service is unavailable: try again in a moment",
  [Code.DeadlineExceeded]: "The service took too long to answer",
  [Code.Internal]: "The service failed",
  [Code.Unimplemented]: "Not supported by the service",
  [Code.Aborted]: "Conflicting change: reload and try again",
};

/** An error from a service, in words. */
export interface Problem {
  /** e.g. "Invalid input". */
  title: string;
  /** The service's own message (grpc-message). */
  detail: string;
  /** Field violations of INVALID_ARGUMENT. */
  fields: FieldViolation[];
  code: Code | null;
}

export function problem(err: unknown): Problem {
  if (err instanceof ConnectError) {
    const fields: FieldViolation[] = [];
    for (const d of err.details) {
      if ("type" in d && d.type === "google.rpc.BadRequest" && d.value instanceof Uint8Array) {
        fields.push(...decodeBadRequest(d.value));
      }
    }
    return {
      title: CODE_WORDS[err.code] ?? `Error (${Code[err.code]})`,
      detail: err.rawMessage,
      fields,
      code: err.code,
    };
  }
  return { title: "Error", detail: err instanceof Error ? err.message : String(err), fields: [], code: null };
}
