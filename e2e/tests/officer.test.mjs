// The officers' web application in a real browser (Chromium headless) against a demo server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE, logins, open, shot, login } from '../lib.mjs';

const who = logins();

/** Runs `fn` on a fresh page; fails on any console error or failed request, except the
 * browser's note of the statuses listed in `expected` (a form sent back with its errors). */
async function session(fn, expected = []) {
  const { browser, page, problems } = await open();
  try {
    await fn(page);
    const unexpected = problems.filter((p) => !expected.some((s) => p.includes(`status of ${s} `)));
    assert.deepEqual(unexpected, [], 'no console error and no failed request');
  } finally {
    await browser.close();
  }
}

test('log in with the second factor, see the dashboard, verify the audit chain', () => session(async (page) => {
  await login(page, who['demo.lanhdao']);
  const header = page.locator('header');
  await assert.doesNotReject(header.getByText('Kiểm toán viên').waitFor());
  await assert.doesNotReject(page.locator('svg.chart').first().waitFor());
  const population = Number(await page.locator('#population').textContent());
  assert.ok(population > 0, 'the dashboard counts the population');
  await shot(page, '01-dashboard-after-mfa');
  await page.getByRole('link', { name: 'Nhật ký truy cập' }).click();
  await page.getByRole('button', { name: 'Kiểm tra toàn vẹn chuỗi nhật ký' }).click();
  const result = page.locator('#verify-result');
  assert.match(await result.textContent(), /Chuỗi nhật ký toàn vẹn/);
  await shot(page, '02-audit-verified');
}));

test('search a person by an unaccented name and open the record', () => session(async (page) => {
  await login(page, who['demo']);
  await page.getByRole('link', { name: 'Tra cứu công dân' }).click();
  await page.getByLabel('Họ và tên (có hoặc không dấu)').fill('nguyen');
  await page.getByRole('button', { name: 'Tìm' }).click();
  const rows = page.locator('#results tbody tr');
  await rows.first().waitFor();
  assert.ok(await rows.count() > 0);
  assert.match(await rows.first().locator('td').first().textContent(), /^Nguyễn/);
  await shot(page, '03-search-unaccented');
  await rows.first().locator('a').first().click();
  await assert.doesNotReject(page.getByRole('heading', { name: 'Lịch sử thay đổi' }).waitFor());
  await shot(page, '04-person');
}));

test('register a temporary residence with Vietnamese validation', () => session(async (page) => {
  await login(page, who['demo']);
  await page.goto(`${BASE}/ui/persons?name=tran`);
  const id = (await page.locator('#results tbody tr').first().locator('td').nth(1).textContent()).trim();
  assert.match(id, /^\d{12}$/);
  await page.goto(`${BASE}/ui/residence`);
  await page.getByRole('link', { name: 'Đăng ký tạm trú' }).click();
  await page.getByRole('button', { name: 'Nộp hồ sơ' }).click();
  const errors = page.locator('.errors');
  assert.match(await errors.textContent(), /Số định danh cá nhân: bắt buộc nhập/);
  assert.match(await errors.textContent(), /Ngày hết hạn tạm trú: bắt buộc nhập/);
  await shot(page, '05-temporary-validation');
  const until = new Date(Date.now() + 180 * 86400_000).toISOString().slice(0, 10);
  for (const commune of ['00004', '26506']) {
    await page.getByLabel('Số định danh cá nhân').fill(id);
    await page.getByLabel('Mã xã/phường nơi tạm trú (danh mục 2025)').fill(commune);
    await page.getByLabel('Địa chỉ chi tiết (số nhà, đường, thôn)').fill('Số 12 phố Thử Nghiệm');
    await page.getByLabel('Tạm trú đến ngày (tối đa 2 năm)').fill(until);
    await page.getByRole('button', { name: 'Nộp hồ sơ' }).click();
    if (await page.locator('#created').count() > 0) break;
    // the person lives in that commune: registered elsewhere instead
    assert.match(await page.locator('.errors').textContent(), /nơi đang thường trú/);
  }
  assert.match(await page.locator('#created').textContent(), /Đã tiếp nhận hồ sơ/);
  await shot(page, '06-temporary-filed');
}, [422]));

test('resolve a pair of the review queue side by side', () => session(async (page) => {
  await login(page, who['demo']);
  await page.getByRole('link', { name: 'Xem xét trùng lặp' }).click();
  await page.locator('#pairs tbody tr a').first().click();
  const compare = page.locator('#compare');
  await compare.waitFor();
  assert.ok(await compare.locator('tr.same').count() > 0, 'fields that agree are marked');
  await shot(page, '07-review-side-by-side');
  await page.getByLabel('Hai người khác nhau (giữ cả hai)').check();
  await page.getByRole('button', { name: 'Ghi quyết định' }).click();
  assert.match(await page.locator('#decided').textContent(), /Đã quyết định: different/);
  await shot(page, '08-review-decided');
}));

test('English on request', () => session(async (page) => {
  await page.goto(`${BASE}/ui/login`);
  // The switch sets the cookie and redirects (to /ui, then, not logged in, to the login page):
  // wait for that page in English rather than navigating over the redirects.
  await page.getByRole('link', { name: 'English' }).click();
  await assert.doesNotReject(page.getByRole('heading', { name: 'Log in' }).waitFor());
  assert.match(page.url(), /\/ui\/login$/);
  await shot(page, '09-login-english');
}));
