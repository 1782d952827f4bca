// The residence screens in a real browser: a permanent registration filed through its form (after
// a validation error), received, approved by the leader, its confirmation printed (HTML and PDF);
// a temporary absence declared; a 2025 address review resolved by picking a commune.
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

const day = (days) => new Date(Date.now() + days * 86400_000).toISOString().slice(0, 10);

/** Personal IDs of active people found by a name. */
async function people(page, name) {
  await page.goto(`${BASE}/ui/persons?name=${name}`);
  const cells = await page.locator('#results tbody tr td:nth-child(2)').allTextContents();
  const ids = cells.map((c) => c.trim()).filter((c) => /^\d{12}$/.test(c));
  assert.ok(ids.length > 0, `active people named ${name}`);
  return ids;
}

test('register a permanent residence, approve it as the leader, print the confirmation', () => session(async (page) => {
  await login(page, who['demo']);
  const ids = await people(page, 'le');
  await page.goto(`${BASE}/ui/residence`);
  await page.getByRole('link', { name: 'Đăng ký thường trú' }).click();
  await page.getByRole('button', { name: 'Nộp hồ sơ' }).click();
  assert.match(await page.locator('.errors').textContent(), /Số định danh cá nhân: bắt buộc nhập/);
  assert.match(await page.locator('#person-error').textContent(), /bắt buộc nhập/);
  await shot(page, 'residence-01-permanent-validation');
  for (const id of ids.slice(0, 8)) {
    await page.getByLabel('Số định danh cá nhân').fill(id);
    await page.getByLabel('Mã xã/phường nơi thường trú (danh mục 2025)').fill('00004');
    await page.getByLabel('Địa chỉ chi tiết (số nhà, đường, thôn)').fill('Số 7 ngõ Thử Nghiệm');
    await page.getByLabel('Hộ gia đình', { exact: true }).selectOption('new');
    await page.getByLabel('Chỗ ở hợp pháp thuộc sở hữu của người đăng ký').check();
    await page.getByLabel('Chuyển nơi thường trú (xóa nơi thường trú cũ)').check();
    await page.getByRole('button', { name: 'Nộp hồ sơ' }).click();
    if (await page.locator('#created').count() > 0) break;
    // a rule of the register refused this person (e.g. the head of a household): the next one
    assert.ok(await page.locator('.errors').count() > 0);
  }
  assert.match(await page.locator('#created').textContent(), /Đã tiếp nhận hồ sơ/);
  await page.locator('#created a').click();
  await page.getByRole('button', { name: 'Tiếp nhận hồ sơ' }).click();
  assert.match(await page.locator('#state').textContent(), /đã tiếp nhận/);
  const url = page.url().replace(/\?.*$/, '');
  await shot(page, 'residence-02-received');
  // the leader approves
  await page.getByRole('button', { name: 'Đăng xuất' }).click();
  // the logout lands on the login page: wait for it, or the next navigation aborts that one
  await page.waitForURL(/\/ui\/login$/);
  await login(page, who['demo.lanhdao']);
  await page.goto(url);
  await page.getByRole('button', { name: 'Phê duyệt' }).click();
  assert.match(await page.locator('#state').textContent(), /đã duyệt/);
  await shot(page, 'residence-03-approved');
  // the confirmation: the PDF the API produces, then the print view
  const pdf = await page.request.get(BASE + await page.locator('#confirmation-pdf').getAttribute('href'));
  assert.equal(pdf.status(), 200);
  assert.equal(pdf.headers()['content-type'], 'application/pdf');
  assert.equal((await pdf.body()).subarray(0, 5).toString(), '%PDF-');
  await page.locator('#print-confirmation').click();
  await assert.doesNotReject(page.getByRole('heading', { name: /XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ/ }).waitFor());
  assert.match(await page.locator('table').textContent(), /Số 7 ngõ Thử Nghiệm/);
  await shot(page, 'residence-04-confirmation');
}, [422]));

test('declare a temporary absence', () => session(async (page) => {
  await login(page, who['demo']);
  const ids = await people(page, 'pham');
  await page.goto(`${BASE}/ui/residence`);
  await page.getByRole('link', { name: 'Khai báo tạm vắng' }).click();
  for (const id of ids.slice(0, 8)) {
    await page.getByLabel('Số định danh cá nhân').fill(id);
    await page.getByLabel('Trường hợp khai báo tạm vắng').selectOption('long_absence');
    await page.getByLabel('Vắng mặt từ ngày').fill(day(1));
    await page.getByLabel('Đến ngày (nếu biết)').fill(day(400));
    await page.getByLabel('Nơi đến').fill('Thành phố Đà Nẵng');
    await page.getByRole('button', { name: 'Nộp hồ sơ' }).click();
    if (await page.locator('#created').count() > 0) break;
    assert.ok(await page.locator('.errors').count() > 0);
  }
  assert.match(await page.locator('#created').textContent(), /Đã tiếp nhận hồ sơ/);
  await page.locator('#created a').click();
  assert.match(await page.locator('h1').textContent(), /Khai báo tạm vắng/);
  await shot(page, 'residence-05-absence');
}, [422]));

test('resolve an address review by picking a 2025 commune', () => session(async (page) => {
  await login(page, who['demo']);
  await page.goto(`${BASE}/ui/residence`);
  await page.getByRole('link', { name: 'Rà soát địa chỉ 2025' }).click();
  const review = page.locator('section.review').first();
  await review.waitFor();
  const id = await review.getAttribute('id');
  await review.getByRole('button', { name: 'Xác nhận xã/phường' }).click();
  assert.match(await page.locator(`#${id} .error`).textContent(), /Hãy chọn một xã\/phường mới/);
  await shot(page, 'residence-06-review-unchosen');
  await page.locator(`#${id} input[type=radio]`).first().check();
  await page.locator(`#${id}`).getByRole('button', { name: 'Xác nhận xã/phường' }).click();
  assert.match(await page.locator('#resolved').textContent(), /Đã cập nhật địa chỉ/);
  assert.equal(await page.locator(`#${id}`).count(), 0, 'no longer pending');
  await shot(page, 'residence-07-review-resolved');
}, [422]));
