// Shared by the browser tests: Chromium from the system (headless, no sandbox), a page that
// records console errors and failed requests, the demo logins, and a TOTP code computed from the
// enrolled secret as an authenticator app would (RFC 6238, SHA-1, 30 s, 6 digits).
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const BASE = process.env.DANCU_E2E_URL;
assert.ok(BASE, 'DANCU_E2E_URL is not set: run e2e/run.sh');

export function logins() {
  const out = {};
  for (const line of readFileSync(process.env.DANCU_E2E_LOGINS, 'utf8').split('\n').filter(Boolean)) {
    const [username, password, uri, about] = line.split('\t');
    const secret = uri ? new URL(uri).searchParams.get('secret') : null;
    out[username] = { username, password, secret, about };
  }
  return out;
}

function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of s.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

export function totp(secret, at = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, '0');
}

/** A fresh browser page; `problems` collects console errors and failed requests. */
export async function open() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    args: ['--no-sandbox', '--headless'],
  });
  const context = await browser.newContext({ viewport: { width: 1024, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  return { browser, page, problems };
}

export async function shot(page, name) {
  await page.screenshot({ path: `screenshots/${name}.png`, fullPage: true });
}

/** A code of the authenticator for `who` that no earlier login of the run has used: the server
 * takes each code once per account, so a login in the same 30-second step as the last one of that
 * account (in any test file: the mark is a file beside the demo logins) waits for the next step. */
async function freshCode(who) {
  const mark = join(dirname(process.env.DANCU_E2E_LOGINS), `totp-used-${who.username}`);
  const used = existsSync(mark) ? Number(readFileSync(mark, 'utf8')) : -1;
  const step = () => Math.floor(Date.now() / 30000);
  if (step() <= used) await new Promise((r) => setTimeout(r, (used + 1) * 30000 - Date.now() + 200));
  const now = Date.now();
  writeFileSync(mark, String(Math.floor(now / 30000)));
  return totp(who.secret, now);
}

/** Logs in through the login page (and the second factor when the account has one). */
export async function login(page, who) {
  await page.goto(`${BASE}/ui`);
  assert.match(page.url(), /\/ui\/login$/, 'an unauthenticated browser is sent to the login page');
  await page.getByLabel('Tên đăng nhập').fill(who.username);
  await page.getByLabel('Mật khẩu').fill(who.password);
  await page.getByRole('button', { name: 'Đăng nhập' }).click();
  if (who.secret) {
    await page.waitForURL(/\/ui\/mfa$/);
    await page.getByLabel('Mã 6 chữ số trong ứng dụng xác thực').fill(await freshCode(who));
    await page.getByRole('button', { name: 'Xác nhận' }).click();
  }
  await page.waitForURL(/\/ui$/);
}
