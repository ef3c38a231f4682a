// The Tenantry admin console: sign in, tenants, provisioning, settings, features, members,
// invitations and the audit trail, over grpc-web only.

import { Code } from "@connectrpc/connect";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import { connect, loadSession, problem, saveSession, type Clients, type Session } from "./api";
import { fill, h, sleep, uuid } from "./dom";
import type { Tenant } from "./gen/tenantry/admin/v1/tenants_pb";
import {
  Feature,
  FeatureSource,
  OrgRole,
  SubscriptionTier,
  TenantStatus,
  type FeatureState,
} from "./gen/tenantry/common/v1/common_pb";
import { InvitationStatus } from "./gen/tenantry/admin/v1/organizations_pb";
import {
  ProvisioningJobState,
  ProvisioningStepState,
  type ProvisioningJob,
} from "./gen/tenantry/provisioning/v1/provisioning_pb";
import type { TenantSettings } from "./gen/tenantry/settings/v1/settings_pb";

let api: Clients;
const app = document.getElementById("app") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
const who = document.getElementById("who") as HTMLElement;

// ---------------------------------------------------------------------------------------------
// Words for enums.

const TIERS: [SubscriptionTier, string][] = [
  [SubscriptionTier.FREE, "Free"],
  [SubscriptionTier.BASIC, "Basic"],
  [SubscriptionTier.PROFESSIONAL, "Professional"],
  [SubscriptionTier.ENTERPRISE, "Enterprise"],
  [SubscriptionTier.EDUCATION, "Education"],
];
const STATUSES: [TenantStatus, string][] = [
  [TenantStatus.ACTIVE, "Active"],
  [TenantStatus.TRIAL, "Trial"],
  [TenantStatus.PENDING, "Pending"],
  [TenantStatus.SUSPENDED, "Suspended"],
  [TenantStatus.CANCELLED, "Cancelled"],
];
const ROLES: [OrgRole, string][] = [
  [OrgRole.ADMIN, "Admin"],
  [OrgRole.MANAGER, "Manager"],
  [OrgRole.TEACHER, "Teacher"],
  [OrgRole.MEMBER, "Member"],
];
const FEATURES: Record<number, string> = {
  [Feature.AI_CHAT]: "AI chat",
  [Feature.ROBLOX_INTEGRATION]: "Roblox integration",
  [Feature.ADVANCED_ANALYTICS]: "Advanced analytics",
  [Feature.CUSTOM_BRANDING]: "Custom branding",
  [Feature.SSO]: "Single sign-on",
  [Feature.API_ACCESS]: "API access",
  [Feature.WEBHOOKS]: "Webhooks",
  [Feature.ADVANCED_SECURITY]: "Advanced security",
  [Feature.PARENT_PORTAL]: "Parent portal",
  [Feature.MOBILE_APP]: "Mobile app",
  [Feature.GAMIFICATION]: "Gamification",
  [Feature.ASSESSMENT_BUILDER]: "Assessment builder",
  [Feature.CONTENT_VERSIONING]: "Content versioning",
  [Feature.LIVE_CLASSES]: "Live classes",
  [Feature.VIDEO_CONFERENCING]: "Video conferencing",
};
const SOURCES: Record<number, string> = {
  [FeatureSource.TIER_DEFAULT]: "tier default",
  [FeatureSource.ORG_ADMIN]: "set by an organization admin",
  [FeatureSource.OPERATOR_OVERRIDE]: "operator override",
};
const INVITATION_STATUSES: Record<number, string> = {
  [InvitationStatus.PENDING]: "Pending",
  [InvitationStatus.ACCEPTED]: "Accepted",
  [InvitationStatus.DECLINED]: "Declined",
  [InvitationStatus.REVOKED]: "Revoked",
  [InvitationStatus.EXPIRED]: "Expired",
};

const word = <T>(list: [T, string][], v: T) => list.find(([k]) => k === v)?.[1] ?? "—";
const tierName = (t: SubscriptionTier) => word(TIERS, t);
const when = (t: Timestamp | undefined) =>
  t ? timestampDate(t).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—";

// ---------------------------------------------------------------------------------------------
// Errors in words.

/** Shows a service error in `box` (role=alert) and marks the form fields it names. */
function showError(box: HTMLElement, err: unknown, form?: HTMLFormElement): void {
  const p = problem(err);
  fill(
    box,
    h("strong", {}, p.title),
    // Field violations name the field themselves; otherwise the service's own message.
    p.detail && !p.fields.length ? h("span", {}, `: ${p.detail}`) : null,
    p.fields.length
      ? h("ul", {}, p.fields.map((f) => h("li", {}, h("code", {}, f.field), ` ${f.description}`)))
      : null,
  );
  if (p.code === Code.Unauthenticated && session()) {
    box.append(
      " ",
      h("button", { type: "button", onclick: () => { saveSession(null); go("#/login"); } }, "Sign in again"),
    );
  }
  box.hidden = false;
  if (!form) return;
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const f of p.fields) {
    const input = [...form.querySelectorAll<HTMLElement>("[data-field]")].find((el) => {
      const name = el.dataset.field ?? "";
      return f.field === name || f.field.endsWith(`.${name}`);
    });
    if (!input) continue;
    const id = `${input.id || input.dataset.field}-error`.replace(/\./g, "-");
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", id);
    input.closest("label")?.after(h("p", { class: "field-error", id }, `${f.field}: ${f.description}`));
  }
}

/** Tells the open view that something changed (the audit trail reloads). */
function changed(): void {
  document.dispatchEvent(new Event("tenantry:changed"));
}

function alertBox(): HTMLElement {
  return h("div", { role: "alert", class: "error", hidden: true });
}

function clearError(box: HTMLElement, form?: HTMLFormElement): void {
  box.hidden = true;
  box.replaceChildren();
  form?.querySelectorAll(".field-error").forEach((el) => el.remove());
  form?.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
}

function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  return h("label", {}, h("span", { class: "label" }, label), input, hint ? h("small", {}, hint) : null);
}

function select<T extends number>(name: string, options: [T, string][], value: T, any?: string) {
  return h(
    "select",
    { name, "data-field": name },
    any ? h("option", { value: "0" }, any) : null,
    options.map(([v, text]) => h("option", { value: String(v), selected: v === value }, text)),
  );
}

// ---------------------------------------------------------------------------------------------
// Routing.

function session(): Session | null {
  return loadSession();
}

function go(hash: string): void {
  if (location.hash === hash) void render();
  else location.hash = hash;
}

async function render(): Promise<void> {
  const s = session();
  renderNav(s);
  const route = location.hash.replace(/^#\/?/, "").split("/");
  if (!s) return loginView();
  try {
    switch (route[0]) {
      case "tenants":
        if (route[1] === "new") return newTenantView();
        return tenantsView();
      case "tenant":
        return await tenantView(route[1] ?? "");
      case "audit":
        return auditPage();
      default:
        return go(s.superAdmin ? "#/tenants" : `#/tenant/${s.tenantId}`);
    }
  } finally {
    app.focus();
  }
}

function renderNav(s: Session | null): void {
  if (!s) {
    fill(nav);
    fill(who);
    return;
  }
  const link = (href: string, text: string) => h("a", { href }, text);
  fill(
    nav,
    s.superAdmin ? [link("#/tenants", "Tenants"), link("#/tenants/new", "New tenant")] : link(`#/tenant/${s.tenantId}`, "My organization"),
    link("#/audit", "Audit trail"),
  );
  fill(
    who,
    `Signed in as ${s.login} (${s.superAdmin ? "super admin" : `tenant ${s.tenantSlug}`}) `,
    h("button", { type: "button", onclick: () => { saveSession(null); go("#/login"); } }, "Sign out"),
  );
}

// ---------------------------------------------------------------------------------------------
// Log in.

function loginView(): void {
  const box = alertBox();
  const form = h(
    "form",
    { "aria-label": "Sign in" },
    field("Tenant slug", h("input", { name: "tenant_slug", "data-field": "tenant_slug", autocomplete: "organization" }), "Leave empty to sign in as a platform super admin."),
    field("E-mail or username", h("input", { name: "login", "data-field": "email", required: true, autocomplete: "username" })),
    field("Password", h("input", { name: "password", type: "password", "data-field": "password", required: true, autocomplete: "current-password" })),
    h("button", { type: "submit" }, "Sign in"),
    box,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError(box, form);
    const data = new FormData(form);
    const slug = String(data.get("tenant_slug") ?? "").trim();
    const login = String(data.get("login") ?? "").trim();
    const password = String(data.get("password") ?? "");
    try {
      const r = await api.auth.login({
        tenantSlug: slug,
        identifier: login.includes("@") ? { case: "email", value: login } : { case: "username", value: login },
        password,
      });
      saveSession({
        token: r.accessToken,
        tenantId: r.tenantId,
        tenantSlug: slug,
        login,
        superAdmin: slug === "",
        expiresAt: Date.now() + Number(r.expiresIn) * 1000,
      });
      go(slug === "" ? "#/tenants" : `#/tenant/${r.tenantId}`);
    } catch (err) {
      showError(box, err, form);
    }
  });
  fill(app, h("h1", {}, "Sign in"), form);
}

// ---------------------------------------------------------------------------------------------
// Tenants (super admins).

const list = {
  query: "",
  status: TenantStatus.UNSPECIFIED,
  tier: SubscriptionTier.UNSPECIFIED,
  includeInactive: false,
  pageSize: 10,
  /** Tokens of the pages before the current one; the last is the current page's. */
  tokens: [""] as string[],
};

function tenantsView(): void {
  const box = alertBox();
  const table = h("tbody");
  const summary = h("p", { role: "status", "aria-live": "polite" });
  const prev = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  const filters = h(
    "form",
    { role: "search", "aria-label": "Filter tenants" },
    field("Search", h("input", { name: "query", type: "search", value: list.query, placeholder: "name, slug or e-mail" })),
    field("Status", select("status", STATUSES, list.status, "Any status")),
    field("Tier", select("tier", TIERS, list.tier, "Any tier")),
    field("Include inactive", h("input", { name: "inactive", type: "checkbox", checked: list.includeInactive })),
    field("Page size", h("input", { name: "page_size", type: "number", min: 1, max: 100, value: list.pageSize })),
    h("button", { type: "submit" }, "Apply filters"),
  );
  const load = async () => {
    clearError(box);
    try {
      const r = await api.tenants.listTenants({
        pageSize: list.pageSize,
        pageToken: list.tokens[list.tokens.length - 1],
        query: list.query,
        status: list.status,
        subscriptionTier: list.tier,
        activeOnly: !list.includeInactive,
      });
      fill(
        table,
        r.tenants.map((t) =>
          h(
            "tr",
            {},
            h("td", {}, h("a", { href: `#/tenant/${t.tenantId}` }, t.name)),
            h("td", {}, t.slug),
            h("td", {}, tierName(t.subscriptionTier)),
            h("td", {}, word(STATUSES, t.status)),
            h("td", {}, t.isVerified ? "yes" : "no"),
            h("td", {}, when(t.createdAt)),
          ),
        ),
      );
      const first = (list.tokens.length - 1) * list.pageSize + 1;
      summary.textContent = r.tenants.length
        ? `Page ${list.tokens.length}: tenants ${first}–${first + r.tenants.length - 1} of ${r.totalSize}`
        : `No tenants match (${r.totalSize} in all).`;
      prev.disabled = list.tokens.length <= 1;
      next.disabled = r.nextPageToken === "";
      next.dataset.token = r.nextPageToken;
    } catch (err) {
      showError(box, err);
    }
  };
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const d = new FormData(filters);
    list.query = String(d.get("query") ?? "").trim();
    list.status = Number(d.get("status")) as TenantStatus;
    list.tier = Number(d.get("tier")) as SubscriptionTier;
    list.includeInactive = d.get("inactive") !== null;
    list.pageSize = Math.min(100, Math.max(1, Number(d.get("page_size")) || 10));
    list.tokens = [""];
    void load();
  });
  next.addEventListener("click", () => {
    list.tokens.push(next.dataset.token ?? "");
    void load();
  });
  prev.addEventListener("click", () => {
    list.tokens.pop();
    void load();
  });
  fill(
    app,
    h("h1", {}, "Tenants"),
    h("p", {}, h("a", { href: "#/tenants/new", class: "button" }, "New tenant")),
    filters,
    box,
    summary,
    h(
      "table",
      { "aria-label": "Tenants" },
      h("thead", {}, h("tr", {}, ["Name", "Slug", "Tier", "Status", "Provisioned", "Created"].map((c) => h("th", { scope: "col" }, c)))),
      table,
    ),
    h("nav", { "aria-label": "Pages", class: "pager" }, prev, next),
  );
  void load();
}

function newTenantView(): void {
  const box = alertBox();
  const form = h(
    "form",
    { "aria-label": "New tenant" },
    field("Name", h("input", { name: "name", "data-field": "name", required: true })),
    field("Slug", h("input", { name: "slug", "data-field": "slug" }), "Lowercase letters, digits and hyphens; used in URLs and to sign in."),
    field("Contact e-mail", h("input", { name: "email", type: "email", "data-field": "email" })),
    field("Tier", select("tier", TIERS, SubscriptionTier.FREE)),
    field("Trial days", h("input", { name: "trial_days", type: "number", "data-field": "trial_days", value: 14 })),
    h("button", { type: "submit" }, "Create tenant"),
    box,
  );
  const submit = form.querySelector("button[type=submit]") as HTMLButtonElement;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError(box, form);
    const d = new FormData(form);
    submit.disabled = true;
    try {
      const r = await api.tenants.createTenant({
        // One id per attempt: a refused attempt writes nothing, and a changed form is a new
        // request (AIP-155 refuses an id reused with another payload).
        requestId: uuid(),
        name: String(d.get("name") ?? ""),
        slug: String(d.get("slug") ?? ""),
        email: String(d.get("email") ?? ""),
        subscriptionTier: Number(d.get("tier")) as SubscriptionTier,
        trialDays: Number(d.get("trial_days") ?? 14),
      });
      go(`#/tenant/${r.tenant?.tenantId ?? ""}`);
    } catch (err) {
      showError(box, err, form);
    } finally {
      submit.disabled = false;
    }
  });
  fill(app, h("h1", {}, "New tenant"), form);
}

// ---------------------------------------------------------------------------------------------
// One tenant.

async function tenantView(id: string): Promise<void> {
  const s = session() as Session;
  const box = alertBox();
  fill(app, h("h1", {}, "Tenant"), box, h("p", {}, "Loading…"));
  let tenant: Tenant | undefined;
  try {
    tenant = s.superAdmin
      ? (await api.tenants.getTenant({ tenantId: id })).tenant
      : (await api.orgs.getOrganization({ tenantId: id })).tenant;
  } catch (err) {
    fill(app, h("h1", {}, "Tenant"), box);
    showError(box, err);
    return;
  }
  if (!tenant) return;
  const t = tenant;
  const facts = h("dl", { class: "facts", "aria-label": "Tenant facts" });
  const showFacts = (t: Tenant) =>
    fill(
      facts,
      h("dt", {}, "Slug"), h("dd", {}, t.slug),
      h("dt", {}, "Tier"), h("dd", { "data-testid": "tier" }, tierName(t.subscriptionTier)),
      h("dt", {}, "Status"), h("dd", { "data-testid": "status" }, word(STATUSES, t.status)),
      h("dt", {}, "Provisioned"), h("dd", { "data-testid": "verified" }, t.isVerified ? "yes" : "no"),
      h("dt", {}, "Users"), h("dd", {}, `${t.usage?.currentUsers ?? 0} of ${t.limits?.maxUsers ?? 0}`),
      h("dt", {}, "Contact"), h("dd", {}, t.email),
      h("dt", {}, "Tenant id"), h("dd", {}, h("code", {}, t.tenantId)),
    );
  showFacts(t);
  const refreshFacts = async () => {
    try {
      const fresh = (await api.tenants.getTenant({ tenantId: t.tenantId })).tenant;
      if (fresh) showFacts(fresh);
    } catch {
      // The facts stay as they were; the provisioning section reports its own errors.
    }
  };
  fill(
    app,
    h("h1", {}, t.displayName || t.name),
    facts,
    s.superAdmin ? provisioningSection(t, refreshFacts) : null,
    settingsSection(t.tenantId),
    featuresSection(t.tenantId),
    membersSection(t.tenantId),
    auditSection(t.tenantId),
  );
}

function section(title: string, ...children: (Node | null)[]): HTMLElement {
  const id = `h-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

function provisioningSection(t: Tenant, onDone: () => Promise<void>): HTMLElement {
  const box = alertBox();
  const status = h("p", { role: "status", "aria-live": "polite" }, t.isVerified ? "This tenant is provisioned." : "Not provisioned yet.");
  const steps = h("ol", { "aria-label": "Provisioning steps" });
  const bar = h("progress", { "aria-label": "Provisioning progress", max: 5, value: 0, hidden: true });
  const secret = h("div");
  const button = h("button", { type: "button" }, t.isVerified ? "Provision again" : "Provision tenant");
  const showJob = (job: ProvisioningJob) => {
    const doneSteps = job.steps.filter((st) => st.state === ProvisioningStepState.SUCCEEDED || st.state === ProvisioningStepState.SKIPPED).length;
    bar.max = Math.max(job.steps.length, 1);
    bar.value = doneSteps;
    fill(
      steps,
      job.steps.map((st) =>
        h("li", {}, `${st.name.replace(/_/g, " ")}: ${ProvisioningStepState[st.state].toLowerCase()}`, st.error ? ` (${st.error})` : null),
      ),
    );
  };
  button.addEventListener("click", async () => {
    clearError(box);
    button.disabled = true;
    bar.hidden = false;
    status.textContent = "Provisioning…";
    let running = true;
    // ProvisionTenant answers when the job has finished; meanwhile, show its steps.
    const poll = (async () => {
      while (running) {
        try {
          const r = await api.provisioning.listProvisioningJobs({ tenantId: t.tenantId, pageSize: 1 });
          if (running && r.jobs[0]) showJob(r.jobs[0]);
        } catch {
          // The final answer below reports errors.
        }
        await sleep(250);
      }
    })();
    try {
      const r = await api.tenants.provisionTenant({ tenantId: t.tenantId, requestId: uuid() });
      running = false;
      await poll;
      // ProvisionTenant answers with the job id if the job outlives its wait: follow it.
      for (;;) {
        const job = (await api.provisioning.getProvisioningJob({ jobId: r.jobId })).job;
        if (job) showJob(job);
        if (!job || (job.state !== ProvisioningJobState.PENDING && job.state !== ProvisioningJobState.RUNNING)) break;
        await sleep(500);
      }
      status.textContent = `Provisioning finished: ${r.message}`;
      await onDone();
      changed();
      if (r.generatedAdminPassword) {
        const pw = r.generatedAdminPassword;
        const copied = h("span", { role: "status" });
        fill(
          secret,
          h(
            "div",
            { class: "secret", role: "region", "aria-label": "One-time admin password" },
            h("p", {}, "The tenant admin (", h("strong", {}, t.email), ") signs in with this one-time password. It is shown only now and never stored: copy it and hand it over."),
            h("output", { "aria-label": "Generated admin password", class: "password" }, pw),
            h(
              "button",
              {
                type: "button",
                onclick: async () => {
                  try {
                    await navigator.clipboard.writeText(pw);
                    copied.textContent = "Copied.";
                  } catch {
                    copied.textContent = "Copy failed: select the password and copy it by hand.";
                  }
                },
              },
              "Copy password",
            ),
            copied,
          ),
        );
      }
    } catch (err) {
      running = false;
      showError(box, err);
      status.textContent = "Provisioning failed.";
    } finally {
      button.disabled = false;
    }
  });
  return section("Provisioning", status, bar, steps, button, box, secret);
}

const SETTING_FIELDS: [string, string, (s: TenantSettings) => string][] = [
  ["display_name", "Display name", (s) => s.displayName],
  ["locale", "Locale", (s) => s.locale],
  ["timezone", "Time zone", (s) => s.timezone],
  ["branding.logo_url", "Logo URL", (s) => s.branding?.logoUrl ?? ""],
  ["branding.primary_color", "Primary colour", (s) => s.branding?.primaryColor ?? ""],
  ["branding.secondary_color", "Secondary colour", (s) => s.branding?.secondaryColor ?? ""],
  ["branding.custom_domain", "Custom domain", (s) => s.branding?.customDomain ?? ""],
];

function settingsSection(tenantId: string): HTMLElement {
  const box = alertBox();
  const saved = h("p", { role: "status", "aria-live": "polite" });
  const form = h("form", { "aria-label": "Settings" }, h("p", {}, "Loading…"));
  const load = async () => {
    try {
      const s = (await api.settings.getSettings({ tenantId })).settings;
      if (!s) return;
      fill(
        form,
        SETTING_FIELDS.map(([path, label, get]) =>
          field(label, h("input", { name: path, "data-field": path, value: get(s), "data-initial": get(s) })),
        ),
        h("button", { type: "submit" }, "Save settings"),
      );
      saved.textContent = `Settings version ${s.version}.`;
    } catch (err) {
      fill(form);
      showError(box, err);
    }
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError(box, form);
    const paths: string[] = [];
    const v = (p: string) => (form.elements.namedItem(p) as HTMLInputElement).value.trim();
    for (const [path] of SETTING_FIELDS) {
      const input = form.elements.namedItem(path) as HTMLInputElement;
      if (input.value.trim() !== input.dataset.initial) paths.push(path);
    }
    if (!paths.length) {
      saved.textContent = "Nothing changed.";
      return;
    }
    try {
      const r = await api.settings.updateSettings({
        tenantId,
        settings: {
          displayName: v("display_name"),
          locale: v("locale"),
          timezone: v("timezone"),
          branding: {
            logoUrl: v("branding.logo_url"),
            primaryColor: v("branding.primary_color"),
            secondaryColor: v("branding.secondary_color"),
            customDomain: v("branding.custom_domain"),
          },
        },
        updateMask: { paths },
      });
      for (const [path, , get] of SETTING_FIELDS) {
        if (r.settings) (form.elements.namedItem(path) as HTMLInputElement).dataset.initial = get(r.settings);
      }
      saved.textContent = `Saved ${paths.join(", ")} (settings version ${r.settings?.version ?? "?"}).`;
      changed();
    } catch (err) {
      showError(box, err, form);
    }
  });
  void load();
  return section("Settings and branding", form, box, saved);
}

function featuresSection(tenantId: string): HTMLElement {
  const s = session() as Session;
  const box = alertBox();
  const note = h("p", { role: "status", "aria-live": "polite" });
  const tbody = h("tbody");
  const row = (f: FeatureState, tier: SubscriptionTier) => {
    const name = FEATURES[f.feature] ?? Feature[f.feature];
    const offeredBy = f.availableInTiers.map(tierName).join(", ");
    // Organization admins toggle what the tier offers; a super admin's toggle is an explicit
    // per-tenant override (GrantFeatureOverride), also for features the tier does not offer.
    const locked = !f.available && !s.superAdmin;
    const box2 = h("input", { type: "checkbox", checked: f.enabled, disabled: locked, "aria-describedby": `feature-${f.feature}-info` });
    box2.addEventListener("change", async () => {
      clearError(box);
      box2.disabled = true;
      try {
        const r = s.superAdmin
          ? await api.settings.grantFeatureOverride({ tenantId, feature: f.feature, enabled: box2.checked, reason: "set in the admin console" })
          : await api.settings.setFeature({ tenantId, feature: f.feature, enabled: box2.checked });
        note.textContent = `${name} ${box2.checked ? "enabled" : "disabled"} (features version ${r.version}).`;
        changed();
        await load();
      } catch (err) {
        box2.checked = !box2.checked;
        showError(box, err);
        box2.disabled = locked;
      }
    });
    return h(
      "tr",
      { class: f.available ? "" : "unavailable" },
      h("td", {}, h("label", {}, box2, ` ${name}`)),
      h("td", { id: `feature-${f.feature}-info` },
        f.available
          ? SOURCES[f.source] ?? ""
          : `Unavailable on the ${tierName(tier)} tier — available in ${offeredBy || "no tier"}` + (f.enabled ? ` (${SOURCES[f.source] ?? ""})` : ""),
      ),
    );
  };
  const load = async () => {
    try {
      const r = await api.settings.getFeatures({ tenantId });
      fill(tbody, r.features.map((f) => row(f, r.subscriptionTier)));
    } catch (err) {
      showError(box, err);
    }
  };
  void load();
  return section(
    "Features",
    h("table", { "aria-label": "Features" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Feature"), h("th", { scope: "col" }, "State"))), tbody),
    box,
    note,
  );
}

function membersSection(tenantId: string): HTMLElement {
  const box = alertBox();
  const members = h("tbody");
  const invitations = h("tbody");
  const sent = h("p", { role: "status", "aria-live": "polite" });
  const form = h(
    "form",
    { "aria-label": "Invite a member" },
    field("E-mail address", h("input", { name: "email", type: "email", "data-field": "email" })),
    field("Role", select("org_role", ROLES, OrgRole.MEMBER)),
    field("Message", h("input", { name: "message", "data-field": "message" })),
    h("button", { type: "submit" }, "Send invitation"),
  );
  const load = async () => {
    try {
      const [m, i] = await Promise.all([
        api.orgs.listMembers({ tenantId, pageSize: 100 }),
        api.orgs.listInvitations({ tenantId, pageSize: 100 }),
      ]);
      fill(members, m.members.map((x) => h("tr", {}, h("td", {}, x.email), h("td", {}, x.username), h("td", {}, word(ROLES, x.orgRole)), h("td", {}, when(x.joinedAt)))));
      fill(invitations, i.invitations.map((x) => h("tr", {}, h("td", {}, x.email), h("td", {}, word(ROLES, x.orgRole)), h("td", {}, INVITATION_STATUSES[x.status] ?? "—"), h("td", {}, when(x.expiresAt)))));
    } catch (err) {
      showError(box, err);
    }
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError(box, form);
    const d = new FormData(form);
    try {
      const r = await api.orgs.createInvitation({
        tenantId,
        requestId: uuid(),
        email: String(d.get("email") ?? ""),
        orgRole: Number(d.get("org_role")) as OrgRole,
        message: String(d.get("message") ?? ""),
      });
      sent.textContent = `Invitation sent to ${r.invitation?.email ?? ""}.`;
      changed();
      form.reset();
      await load();
    } catch (err) {
      showError(box, err, form);
    }
  });
  void load();
  const head = (...cols: string[]) => h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c))));
  const s = session() as Session;
  return section(
    "Members and invitations",
    s.superAdmin
      ? h("p", {}, "Members and invitations belong to the tenant's own roles: a super admin is refused here. Sign in as the tenant's admin to manage them.")
      : null,
    box,
    h("table", { "aria-label": "Members" }, head("E-mail", "Username", "Role", "Joined"), members),
    h("h3", {}, "Invitations"),
    h("table", { "aria-label": "Invitations" }, head("E-mail", "Role", "Status", "Expires"), invitations),
    form,
    sent,
  );
}

/** The audit trail of one tenant (or of every tenant for a super admin when `tenantId` is ""). */
function auditSection(tenantId: string): HTMLElement {
  const box = alertBox();
  const tbody = h("tbody");
  const summary = h("p", { role: "status" });
  const tokens = [""];
  const prev = h("button", { type: "button", disabled: true }, "Newer events");
  const next = h("button", { type: "button", disabled: true }, "Older events");
  const load = async () => {
    try {
      const r = await api.audit.listAuditEvents({ tenantId, pageSize: 20, pageToken: tokens[tokens.length - 1] });
      fill(
        tbody,
        r.auditEvents.map((ev) =>
          h(
            "tr",
            {},
            h("td", {}, when(ev.createdAt)),
            h("td", {}, ev.action.replace(/^tenantry\./, "")),
            h("td", {}, `${ev.actorRole || "—"} ${ev.actorId.slice(0, 8)}`),
            h("td", {}, `${ev.targetType} ${ev.targetId.slice(0, 8)}`),
          ),
        ),
      );
      summary.textContent = r.totalSize === 1 ? "1 event." : `${r.totalSize} events.`;
      prev.disabled = tokens.length <= 1;
      next.disabled = r.nextPageToken === "";
      next.dataset.token = r.nextPageToken;
    } catch (err) {
      showError(box, err);
    }
  };
  const onChange = () => {
    if (!tbody.isConnected) {
      document.removeEventListener("tenantry:changed", onChange);
      return;
    }
    // Newest first: show the first page with the new event.
    tokens.splice(1);
    void load();
  };
  document.addEventListener("tenantry:changed", onChange);
  next.addEventListener("click", () => { tokens.push(next.dataset.token ?? ""); void load(); });
  prev.addEventListener("click", () => { tokens.pop(); void load(); });
  void load();
  return section(
    "Audit trail",
    box,
    summary,
    h("table", { "aria-label": "Audit trail" }, h("thead", {}, h("tr", {}, ["When", "Action", "Actor", "Target"].map((c) => h("th", { scope: "col" }, c)))), tbody),
    h("nav", { "aria-label": "Audit pages", class: "pager" }, prev, next),
  );
}

function auditPage(): void {
  const s = session() as Session;
  fill(
    app,
    h("h1", {}, s.superAdmin ? "Audit trail of every tenant" : `Audit trail of ${s.tenantSlug}`),
    auditSection(s.superAdmin ? "" : s.tenantId),
  );
}

// ---------------------------------------------------------------------------------------------

async function start(): Promise<void> {
  try {
    api = await connect();
  } catch (err) {
    fill(app, h("div", { role: "alert", class: "error" }, `The console cannot start: ${problem(err).detail}`));
    return;
  }
  window.addEventListener("hashchange", () => void render());
  await render();
}

void start();
