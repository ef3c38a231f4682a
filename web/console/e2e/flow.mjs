// The console's whole flow in Chromium (playwright-core, Debian's chromium), against a running
// stack. Run by tools/tenantctl/tests/console.rs; by hand:
//
//   CONSOLE_URL=http://127.0.0.1:50051/ LOGIN_EMAIL=admin@tenantry.local LOGIN_PASSWORD=... \
//   RUN_ID=abc123 SHOTS_DIR=/tmp/shots CHROMIUM=$(command -v chromium) node e2e/flow.mjs
//
// Every step asserts what the page shows; the last line printed is `RESULT {json}` for the
// caller to check against the services and the database.

import { chromium } from "playwright-core";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is required`);
  return v;
};
const url = env("CONSOLE_URL");
const email = env("LOGIN_EMAIL");
const password = env("LOGIN_PASSWORD");
const run = env("RUN_ID");
const shots = env("SHOTS_DIR");
const executablePath = env("CHROMIUM");
const TIMEOUT = 20_000;

const step = (name) => console.log(`step: ${name}`);
await mkdir(shots, { recursive: true });
const profile = await mkdtemp(join(tmpdir(), "tenantry-console-chromium-"));

const browser = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
  permissions: ["clipboard-read", "clipboard-write"],
});
const page = browser.pages()[0] ?? (await browser.newPage());
page.setDefaultTimeout(TIMEOUT);
const consoleErrors = [];
page.on("console", (m) => {
  if (m.type() === "error") consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(String(e)));
const shot = (name) => page.screenshot({ path: join(shots, `console-${name}.png`), fullPage: true });
const result = { run };

async function signIn(slug, login, pw) {
  const form = page.getByRole("form", { name: "Sign in" });
  await form.getByLabel("Tenant slug").fill(slug);
  await form.getByLabel("E-mail or username").fill(login);
  await form.getByLabel("Password").fill(pw);
  await form.getByRole("button", { name: "Sign in" }).click();
}

async function signOut() {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
}

try {
  step("the console page answers with its security headers");
  const response = await page.goto(url);
  assert.equal(response.status(), 200);
  const headers = response.headers();
  result.headers = {
    csp: headers["content-security-policy"] ?? "",
    nosniff: headers["x-content-type-options"] ?? "",
    referrer: headers["referrer-policy"] ?? "",
    frame: headers["x-frame-options"] ?? "",
    hsts: headers["strict-transport-security"] ?? "",
  };
  await page.getByRole("heading", { name: "Sign in" }).waitFor();

  step("a wrong password is refused in words");
  await signIn("", email, "not-the-password");
  const loginAlert = page.getByRole("form", { name: "Sign in" }).getByRole("alert");
  await loginAlert.waitFor();
  result.wrongPassword = (await loginAlert.innerText()).trim();
  assert.match(result.wrongPassword, /^Not authenticated: invalid credentials$/);

  step("the super admin signs in (empty tenant slug)");
  await signIn("", email, password);
  await page.getByRole("heading", { name: "Tenants" }).waitFor();
  await page.getByText(`Signed in as ${email} (super admin)`).waitFor();
  await shot("signed-in");

  step("a bad slug is refused with the field named");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "New tenant" }).click();
  const create = page.getByRole("form", { name: "New tenant" });
  const name = `Console Academy ${run}`;
  const slug = `console-${run}`;
  const tenantEmail = `owner-${run}@example.com`;
  await create.getByLabel("Name").fill(name);
  await create.getByLabel("Slug").fill("Bad Slug!");
  await create.getByLabel("Contact e-mail").fill(tenantEmail);
  await create.getByLabel("Tier").selectOption({ label: "Basic" });
  await create.getByRole("button", { name: "Create tenant" }).click();
  const createAlert = create.getByRole("alert");
  await createAlert.waitFor();
  result.badSlugAlert = (await createAlert.innerText()).trim();
  assert.match(result.badSlugAlert, /^Invalid input/);
  assert.match(result.badSlugAlert, /slug/);
  assert.equal(await create.getByLabel("Slug").getAttribute("aria-invalid"), "true");
  const fieldError = (await create.locator(".field-error").innerText()).trim();
  assert.match(fieldError, /^slug: /);
  await shot("field-error");

  step("the tenant is created");
  await create.getByLabel("Slug").fill(slug);
  await create.getByRole("button", { name: "Create tenant" }).click();
  await page.getByRole("heading", { name, level: 1 }).waitFor();
  assert.equal(await page.getByTestId("tier").innerText(), "Basic");
  assert.equal(await page.getByTestId("verified").innerText(), "no");
  result.tenantId = (await page.locator(".facts code").innerText()).trim();
  assert.match(result.tenantId, /^[0-9a-f-]{36}$/);

  step("provisioning shows its progress and the one-time password once");
  await page.getByRole("button", { name: "Provision tenant" }).click();
  await page.getByRole("progressbar", { name: "Provisioning progress" }).waitFor();
  const provStatus = page.getByRole("region", { name: "Provisioning" }).getByRole("status").first();
  await page.getByText(/^Provisioning finished: /).waitFor({ timeout: 60_000 });
  result.provisioningStatus = (await provStatus.innerText()).trim();
  const steps = await page.getByRole("list", { name: "Provisioning steps" }).getByRole("listitem").allInnerTexts();
  result.provisioningSteps = steps;
  assert.ok(steps.length >= 4, `steps: ${steps}`);
  assert.ok(steps.some((s) => s.startsWith("admin user created: succeeded")), `steps: ${steps}`);
  assert.equal(
    await page.getByRole("progressbar", { name: "Provisioning progress" }).evaluate((p) => p.value === p.max),
    true,
  );
  const secret = page.getByRole("region", { name: "One-time admin password" });
  const adminPassword = (await secret.getByLabel("Generated admin password").innerText()).trim();
  assert.ok(adminPassword.length >= 12, "no generated password");
  await secret.getByRole("button", { name: "Copy password" }).click();
  await secret.getByText("Copied.").waitFor();
  result.clipboardMatches = (await page.evaluate(() => navigator.clipboard.readText())) === adminPassword;
  assert.ok(result.clipboardMatches, "the clipboard does not hold the password");
  await page.getByTestId("verified").filter({ hasText: /^yes$/ }).waitFor();
  await shot("provisioned");
  // Shown once: the same page loaded again has no password.
  await page.reload();
  await page.getByRole("heading", { name, level: 1 }).waitFor();
  assert.equal(await page.getByTestId("verified").innerText(), "yes");
  assert.equal(await page.getByRole("region", { name: "One-time admin password" }).count(), 0);
  result.passwordShownOnce = true;

  step("tenants: search, filters and paging");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Tenants" }).click();
  const filters = page.getByRole("search", { name: "Filter tenants" });
  await filters.getByLabel("Search").fill(run);
  await filters.getByLabel("Tier").selectOption({ label: "Basic" });
  await filters.getByLabel("Page size").fill("2");
  await filters.getByRole("button", { name: "Apply filters" }).click();
  const summary = page.getByRole("status").filter({ hasText: /Page|No tenants/ });
  await page.getByText(/^Page 1: tenants 1–2 of 3$/).waitFor();
  const rows1 = await page.getByRole("table", { name: "Tenants" }).locator("tbody tr").count();
  assert.equal(rows1, 2);
  await shot("tenants");
  await page.getByRole("button", { name: "Next page" }).click();
  await page.getByText(/^Page 2: tenants 3–3 of 3$/).waitFor();
  assert.equal(await page.getByRole("button", { name: "Next page" }).isDisabled(), true);
  const page2 = await page.getByRole("table", { name: "Tenants" }).locator("tbody tr td:first-child").allInnerTexts();
  await page.getByRole("button", { name: "Previous page" }).click();
  await page.getByText(/^Page 1: tenants 1–2 of 3$/).waitFor();
  const page1 = await page.getByRole("table", { name: "Tenants" }).locator("tbody tr td:first-child").allInnerTexts();
  result.pages = [page1, page2];
  assert.ok([...page1, ...page2].includes(name), `${name} not listed: ${[page1, page2]}`);
  assert.equal(new Set([...page1, ...page2]).size, 3);
  await filters.getByLabel("Tier").selectOption({ label: "Enterprise" });
  await filters.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText(/^No tenants match \(0 in all\)\.$/).waitFor();
  await filters.getByLabel("Tier").selectOption({ label: "Any tier" });
  await filters.getByLabel("Status").selectOption({ label: "Suspended" });
  await filters.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText(/^No tenants match \(0 in all\)\.$/).waitFor();
  await filters.getByLabel("Status").selectOption({ label: "Trial" });
  await filters.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText(/^Page 1: tenants 1–2 of 3$/).waitFor();
  await filters.getByLabel("Status").selectOption({ label: "Any status" });
  await filters.getByLabel("Search").fill(slug);
  await filters.getByRole("button", { name: "Apply filters" }).click();
  await page.getByText(/^Page 1: tenants 1–1 of 1$/).waitFor();
  await summary.first().waitFor();

  step("tenant detail as super admin: features, an override, and a refused settings change");
  await page.getByRole("link", { name }).click();
  await page.getByRole("heading", { name, level: 1 }).waitFor();
  const features = page.getByRole("table", { name: "Features" });
  const sso = features.getByRole("row").filter({ hasText: "Single sign-on" });
  await sso.getByText("Unavailable on the Basic tier — available in Enterprise").waitFor();
  result.unavailableText = (await sso.locator("td").nth(1).innerText()).trim();
  const gamification = features.getByRole("checkbox", { name: "Gamification" });
  assert.equal(await gamification.isChecked(), true);
  await gamification.uncheck();
  await page.getByText(/^Gamification disabled \(features version \d+\)\.$/).waitFor();
  await features.getByRole("row").filter({ hasText: "Gamification" }).getByText("operator override").waitFor();
  const settings = page.getByRole("form", { name: "Settings" });
  await settings.getByLabel("Primary colour").fill("#aa0000");
  await settings.getByRole("button", { name: "Save settings" }).click();
  const deniedBox = page.getByRole("region", { name: "Settings and branding" }).getByRole("alert");
  await deniedBox.waitFor();
  result.permissionDenied = (await deniedBox.innerText()).trim();
  assert.match(result.permissionDenied, /^Permission denied: your role may not do this/);
  await shot("permission-denied");

  step("the tenant admin signs in with the one-time password");
  await signOut();
  await signIn(slug, tenantEmail, adminPassword);
  await page.getByRole("heading", { name, level: 1 }).waitFor();
  await page.getByText(`Signed in as ${tenantEmail} (tenant ${slug})`).waitFor();

  step("the tenant admin changes settings; refusals are shown in words");
  const settingsAlert = page.getByRole("region", { name: "Settings and branding" }).getByRole("alert");
  // Branding needs the custom_branding feature, which Basic does not offer.
  await settings.getByLabel("Primary colour").fill("#123456");
  await settings.getByRole("button", { name: "Save settings" }).click();
  await settingsAlert.getByText(/custom_branding/).waitFor();
  result.brandingAlert = (await settingsAlert.innerText()).trim();
  assert.match(result.brandingAlert, /^Not possible in the current state: /);
  await settings.getByLabel("Primary colour").fill("");
  // A bad time zone names the field.
  await settings.getByLabel("Time zone").fill("Mars/Olympus_Mons");
  await settings.getByRole("button", { name: "Save settings" }).click();
  await settingsAlert.getByText(/^Invalid input/).waitFor();
  result.badTimezoneAlert = (await settingsAlert.innerText()).trim();
  assert.match(result.badTimezoneAlert, /timezone/);
  assert.equal(await settings.getByLabel("Time zone").getAttribute("aria-invalid"), "true");
  await settings.getByLabel("Time zone").fill("Europe/Paris");
  await settings.getByLabel("Display name").fill(`${name} (console)`);
  await settings.getByRole("button", { name: "Save settings" }).click();
  await page.getByText(/^Saved display_name, timezone \(settings version \d+\)\.$/).waitFor();
  assert.equal(await settingsAlert.isHidden(), true);

  step("the tenant admin toggles an offered feature; unavailable ones are locked");
  const assessment = features.getByRole("checkbox", { name: "Assessment builder" });
  assert.equal(await assessment.isChecked(), false);
  await assessment.check();
  await page.getByText(/^Assessment builder enabled \(features version \d+\)\.$/).waitFor();
  await features.getByRole("row").filter({ hasText: "Assessment builder" }).getByText("set by an organization admin").waitFor();
  assert.equal(await features.getByRole("checkbox", { name: "Single sign-on" }).isDisabled(), true);

  step("members and invitations");
  const members = page.getByRole("table", { name: "Members" });
  await members.getByRole("cell", { name: tenantEmail }).waitFor();
  const invite = page.getByRole("form", { name: "Invite a member" });
  const invitee = `teacher-${run}@example.com`;
  await invite.getByLabel("E-mail address").fill(invitee);
  await invite.getByLabel("Role").selectOption({ label: "Teacher" });
  await invite.getByRole("button", { name: "Send invitation" }).click();
  await page.getByText(`Invitation sent to ${invitee}.`).waitFor();
  const invitationRow = page.getByRole("table", { name: "Invitations" }).getByRole("row").filter({ hasText: invitee });
  await invitationRow.getByRole("cell", { name: "Pending", exact: true }).waitFor();
  await invitationRow.getByRole("cell", { name: "Teacher", exact: true }).waitFor();
  result.invitee = invitee;

  step("the tenant admin's audit trail shows the actions, live and after a reload");
  const audit = page.getByRole("table", { name: "Audit trail" });
  await audit.getByText("admin.v1.OrganizationService/CreateInvitation").first().waitFor();
  await shot("tenant-detail");
  await page.reload();
  await audit.getByText("admin.v1.OrganizationService/CreateInvitation").first().waitFor();
  result.tenantAudit = await audit.locator("tbody tr td:nth-child(2)").allInnerTexts();

  step("the tenant admin may not list tenants: refused in words");
  await page.goto(new URL("#/tenants", url).toString());
  const listAlert = page.getByRole("alert").filter({ hasText: "Permission denied" });
  await listAlert.waitFor();
  result.adminListTenants = (await listAlert.innerText()).trim();

  step("the super admin's audit trail shows every action on the tenant");
  await signOut();
  await signIn("", email, password);
  await page.getByRole("heading", { name: "Tenants" }).waitFor();
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Audit trail" }).click();
  await page.getByRole("heading", { name: "Audit trail of every tenant", level: 1 }).waitFor();
  await audit.getByText("admin.v1.TenantAdminService/CreateTenant").first().waitFor();
  result.platformAudit = await audit.locator("tbody tr td:nth-child(2)").allInnerTexts();
  await shot("audit");

  result.consoleErrors = consoleErrors.filter((e) => !/Failed to load resource/.test(e));
  console.log(`RESULT ${JSON.stringify(result)}`);
} catch (err) {
  await shot("failure").catch(() => {});
  console.error(`FAILED at ${page.url()}: ${err?.stack ?? err}`);
  console.error(`console errors: ${JSON.stringify(consoleErrors)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
  await rm(profile, { recursive: true, force: true });
}
