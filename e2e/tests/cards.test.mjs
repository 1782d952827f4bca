// Identity cards in a real browser (Chromium headless) against a demo server: a card application
// from intake (the photo previewed before it is sent) through verification, approval by a second
// officer, queueing, the production centre's personalization run, to the card's chip files
// downloaded from the card page and verified on the verification page — and a tampered DG1 shown
// as the check that failed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASE, logins, open, shot, login } from '../lib.mjs';

const who = logins();
const here = dirname(fileURLToPath(import.meta.url));
const FACE = join(here, '..', '..', 'crates', 'dancu-card', 'testdata', 'face.jpg');

/** Opens a logged-in page; `problems` collects console errors and failed requests. */
async function officer(name) {
  const s = await open();
  await login(s.page, who[name]);
  return s;
}

/** No console error and no failed request, except the browser's note of the statuses listed in
 * `expected` (a form sent back with its errors). */
function clean(problems, expected = []) {
  const unexpected = problems.filter((p) => !expected.some((s) => p.includes(`status of ${s} `)));
  assert.deepEqual(unexpected, [], 'no console error and no failed request');
}

/** A person of the demo with a personal ID and old enough for a card (born 1960-1995). */
async function adult(page) {
  for (let year = 1985; year > 1960; year--) {
    await page.goto(`${BASE}/ui/persons?name=nguyen&birth_year=${year}`);
    const rows = page.locator('#results tbody tr');
    const n = await rows.count();
    for (let i = 0; i < n; i++) {
      const id = (await rows.nth(i).locator('td').nth(1).textContent()).trim();
      if (/^\d{12}$/.test(id)) return rows.nth(i).locator('a').first();
    }
  }
  throw new Error('no adult with a personal ID in the demo data');
}

test('a card application from intake to personalization, then its chip data verified', async () => {
  const clerk = await officer('demo'); // collector, verifier, card operator (ministry)
  const lead = await officer('demo.lanhdao'); // approver (second factor)
  const maker = await officer('demo.sanxuat'); // production operator
  const folder = mkdtempSync(join(tmpdir(), 'dancu-chip-'));
  try {
    // Intake, from the person's page.
    let page = clerk.page;
    await (await adult(page)).click();
    await page.locator('#card-intake').click();
    await page.waitForURL(/\/card-application$/);
    // Sent empty: the errors in Vietnamese, next to their fields.
    await page.getByRole('button', { name: 'Tiếp nhận hồ sơ' }).click();
    assert.match(await page.locator('#kind-error').textContent(), /Loại thủ tục: bắt buộc chọn/);
    assert.match(await page.locator('#photo-error').textContent(), /Ảnh chân dung: bắt buộc tải lên/);
    await shot(page, '20-card-intake-errors');
    await page.getByLabel('Loại thủ tục').selectOption('first_issue');
    await page.locator('#photo').setInputFiles(FACE);
    const preview = page.locator('#photo-preview');
    await preview.waitFor({ state: 'visible' });
    assert.match(await preview.getAttribute('src'), /^data:image\/jpeg;base64,/);
    assert.ok(await preview.evaluate((img) => img.complete && img.naturalWidth === 480), 'the preview shows the photo');
    await shot(page, '21-card-intake-preview');
    await page.getByRole('button', { name: 'Tiếp nhận hồ sơ' }).click();
    await page.waitForURL(/\/ui\/cards\/applications\/[0-9a-f-]+\?notice=created$/);
    const appUrl = page.url().split('?')[0];
    assert.match(await page.locator('#stage').textContent(), /Đã tiếp nhận/);
    // Verified by the clerk (a verifier) …
    await page.getByRole('button', { name: 'Xác minh hồ sơ' }).click();
    await page.waitForURL(/notice=step$/);
    assert.match(await page.locator('#stage').textContent(), /Đã xác minh/);
    await shot(page, '22-card-verified');

    // … approved by a second officer …
    await lead.page.goto(appUrl);
    await lead.page.getByRole('button', { name: 'Phê duyệt' }).click();
    await lead.page.waitForURL(/notice=step$/);
    assert.match(await lead.page.locator('#stage').textContent(), /Đã phê duyệt/);

    // … queued at the production centre, seen on the workflow board.
    await page.goto(appUrl);
    await page.getByLabel('Trung tâm sản xuất').selectOption('tt-ha-noi');
    await page.getByRole('button', { name: 'Chuyển sản xuất' }).click();
    await page.waitForURL(/notice=step$/);
    assert.match(await page.locator('#stage').textContent(), /Chờ sản xuất/);
    const number = (await page.locator('#app-number').textContent()).trim();
    await page.getByRole('link', { name: 'Thẻ căn cước' }).click();
    await assert.doesNotReject(page.locator('#board').getByText(number).waitFor());
    await shot(page, '23-card-board');

    // The production centre runs personalization (earliest deadline first).
    page = maker.page;
    await page.getByRole('link', { name: 'Sản xuất thẻ' }).click();
    const centre = page.locator('#centre-tt-ha-noi');
    await assert.doesNotReject(centre.getByText(number).waitFor());
    await shot(page, '24-production-queue');
    await centre.getByRole('button', { name: 'Chạy cá nhân hóa thẻ' }).click();
    await page.waitForURL(/\/ui\/production\?made=/);
    assert.match(await page.locator('#run-result').textContent(), /Đã cá nhân hóa [1-9]\d* thẻ/);
    await shot(page, '25-production-run');

    // The card: its faces and its chip files, downloaded.
    await page.goto(appUrl);
    assert.match(await page.locator('#stage').textContent(), /Đã in thẻ/);
    await page.locator('#card-link').click();
    await page.waitForURL(/\/ui\/cards\/\d{12}$/);
    await assert.doesNotReject(page.locator('figure.face svg').first().waitFor());
    await shot(page, '26-card-faces');
    const links = page.locator('#chip-files a');
    assert.equal(await links.count(), 5);
    for (let i = 0; i < 5; i++) {
      const [download] = await Promise.all([page.waitForEvent('download'), links.nth(i).click()]);
      await download.saveAs(join(folder, download.suggestedFilename()));
    }

    // Verified: the folder uploaded, every check passes.
    await page.getByRole('link', { name: 'Kiểm tra dữ liệu chip (xác thực thụ động)' }).click();
    await page.locator('#chip-folder').setInputFiles(folder);
    await page.getByRole('button', { name: 'Kiểm tra', exact: true }).click();
    assert.match(await page.locator('#verify-result').textContent(), /Thẻ hợp lệ/);
    assert.equal(await page.locator('#checks tr.check-fail').count(), 0);
    assert.ok(await page.locator('#checks tr.check-ok').count() >= 6);
    await shot(page, '27-chip-verified');

    // A tampered DG1: its hash check fails, the signature still verifies.
    const dg1 = readFileSync(join(folder, 'dg1.bin'));
    dg1[dg1.length - 5] = dg1[dg1.length - 5] === 0x41 ? 0x42 : 0x41;
    writeFileSync(join(folder, 'dg1.bin'), dg1);
    await page.locator('#chip-folder').setInputFiles(folder);
    await page.getByRole('button', { name: 'Kiểm tra', exact: true }).click();
    assert.match(await page.locator('#verify-result').textContent(), /Thẻ KHÔNG hợp lệ/);
    const row = page.locator('#checks tr[data-check="DG1 hash"]');
    assert.match(await row.getAttribute('class'), /check-fail/);
    assert.match(await row.textContent(), /tệp đã bị thay đổi/);
    assert.match(await page.locator('#checks tr[data-check="SignerInfo signature"]').getAttribute('class'), /check-ok/);
    await shot(page, '28-chip-tampered');

    clean(clerk.problems, [422]);
    clean(lead.problems);
    clean(maker.problems);
  } finally {
    await clerk.browser.close();
    await lead.browser.close();
    await maker.browser.close();
    rmSync(folder, { recursive: true, force: true });
  }
});
