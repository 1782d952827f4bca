// Intake, change-request approval and partner registration in a real browser (Chromium
// headless) against a demo server: a generated batch with duplicates and a few bad rows uploaded
// and watched to its end, its error report downloaded, a review pair of the batch opened; a
// collector's name edit approved by the leader; a partner registered, its secret shown once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/** A generated file of people of Hà Nội with labelled duplicates, plus three bad rows. */
function batchFile() {
  const bin = process.env.DANCU_E2E_BIN;
  assert.ok(bin, 'DANCU_E2E_BIN is not set: run e2e/run.sh');
  const dir = mkdtempSync(join(tmpdir(), 'dancu-e2e-intake-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'lo-nhap.csv');
  // large enough that some pairs are uncertain (the review band holds only those)
  execFileSync(bin, ['generate', '--people', '1500', '--seed', '13', '--provinces', '01', '--duplicates', '0.3',
    '--out', file], { stdio: 'ignore' });
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
  const header = lines[0].split(',');
  const plain = lines.slice(1).find((l) => !l.includes('"'));
  const bad = (field, value) => {
    const cells = plain.split(',');
    cells[header.indexOf(field)] = value;
    cells[header.indexOf('given_name')] = 'Lỗi';
    return cells.join(',');
  };
  lines.push(bad('birth_date', '31/02/1990'), bad('sex', 'không rõ'), bad('residence_commune', '99999'));
  writeFileSync(file, `${lines.join('\n')}\n`);
  return { file, rows: lines.length - 1 };
}

test('upload a batch, watch it to the end, download its error report, open a review pair', () => session(async (page) => {
  const { file, rows } = batchFile();
  await login(page, who['demo']);
  await page.getByRole('link', { name: 'Nhập dữ liệu' }).click();
  await page.getByLabel('Tệp CSV hoặc XLSX').setInputFiles(file);
  await page.getByLabel(/Đơn vị của dữ liệu/).fill('province:01');
  await shot(page, '10-intake-upload');
  await page.getByRole('button', { name: 'Tải lên và nhập' }).click();
  await page.waitForURL(/\/ui\/intake\/[0-9a-f]{64}$/);
  // the page reloads itself while the import runs, until the summary shows
  await page.getByText('Đã nhập xong.').waitFor({ timeout: 180_000 });
  assert.equal(Number(await page.locator('#rows-read').textContent()), rows);
  assert.ok(Number(await page.locator('#rows-rejected').textContent()) >= 3, 'the bad rows are rejected');
  const linked = Number(await page.locator('#linked-file').textContent());
  const pairs = Number(await page.locator('#review-pairs').textContent());
  assert.ok(linked + pairs > 0, 'duplicates are linked or queued for review');
  await shot(page, '11-intake-finished');
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#report').click()]);
  const report = readFileSync(await download.path(), 'utf8');
  const lines = report.replace(/^\uFEFF/, '').split('\n');
  assert.equal(lines[0], 'line,kind,field,value,code,reason,message');
  const line = (text) => lines.find((l) => l.includes(text)) ?? '';
  // the file's lines: the header is line 1, the three bad rows are the last three
  assert.match(line(',rejected,birth_date,31/02/1990,'), new RegExp(`^${rows - 1},`));
  assert.match(line(',rejected,birth_date,31/02/1990,'), /Trường birth_date: ngày không hợp lệ/);
  assert.match(line(',rejected,sex,không rõ,'), new RegExp(`^${rows},.*giới tính không hợp lệ`));
  // the batch's review pairs: open one side by side
  assert.ok(pairs > 0, 'the batch queued possible duplicates for review');
  await page.locator('#batch-pairs a').first().click();
  await page.locator('#compare').waitFor();
  await shot(page, '12-intake-review-pair');
}));

test('a collector edits a name, the leader approves the change request', async () => {
  let personUrl;
  await session(async (page) => {
    // the people of the commune officer's own commune (its unit is in the demo logins)
    const commune = who['demo.xa'].about.match(/commune:(\d{5})/)?.[1];
    assert.ok(commune, `the commune officer's unit: ${who['demo.xa'].about}`);
    await login(page, who['demo.xa']);
    await page.goto(`${BASE}/ui/persons?commune=${commune}`);
    // an active person (a record still being collected, without a number, changes without approval)
    await page.locator('#results tbody tr').filter({ hasText: 'đang sống' }).first().locator('a').click();
    personUrl = page.url();
    await page.getByRole('link', { name: 'Sửa thông tin' }).click();
    await page.getByLabel('Tên', { exact: true }).fill('Thử Nghiệm');
    await page.getByLabel('Lý do thay đổi').fill('Cải chính họ tên theo giấy khai sinh');
    await page.getByRole('button', { name: 'Lưu' }).click();
    await page.locator('#pending-approval').waitFor();
    await page.locator('#pending-requests').waitFor();
    await shot(page, '13-change-request-pending');
  });
  await session(async (page) => {
    await login(page, who['demo.lanhdao']);
    await page.getByRole('link', { name: 'Phê duyệt thay đổi' }).click();
    await page.locator('#requests').waitFor();
    await page.goto(personUrl);
    await page.locator('#pending-requests a').first().click();
    assert.match(await page.locator('#maker').textContent(), /demo\.xa/);
    assert.match(await page.locator('#compare').textContent(), /Thử Nghiệm/);
    await shot(page, '14-change-request-compare');
    await page.getByLabel('Phê duyệt (áp dụng thay đổi)').check();
    await page.getByRole('button', { name: 'Ghi quyết định' }).click();
    assert.match(await page.locator('#request-state').textContent(), /đã phê duyệt/);
    assert.match(await page.locator('#checker').textContent(), /demo\.lanhdao/);
    await page.goto(personUrl);
    assert.match(await page.locator('h1').textContent(), /Thử Nghiệm$/);
    await shot(page, '15-change-request-approved');
  });
});

test('register a partner and see its client secret once', () => session(async (page) => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' });
  const id = `cong-dvc-${Date.now() % 100000}`;
  await login(page, who['demo.doitac']);
  await page.getByRole('link', { name: 'Đối tác' }).click();
  await page.getByLabel('Mã đối tác (client_id)').fill(id);
  await page.getByLabel('Tên đối tác').fill('Cổng dịch vụ công thử nghiệm');
  await page.getByLabel('Loại đối tác').selectOption('portal');
  await page.getByLabel('Căn cứ pháp lý').fill('Nghị định 59/2022/NĐ-CP');
  await page.getByLabel('Xác thực thông tin', { exact: true }).check();
  await page.getByLabel('Họ, chữ đệm và tên').check();
  await page.getByLabel('Hiệu lực đến ngày').fill('2030-12-31');
  // a key that is not P-256 first: the form comes back with the reason next to the field
  await page.getByLabel('Khóa công khai của đối tác (P-256, PEM)').fill('not a key');
  await page.getByLabel('Địa chỉ chuyển hướng (mỗi dòng một địa chỉ)').fill('https://dichvucong.example/callback');
  await page.getByLabel('Cách xác thực của cổng').selectOption('client_secret_basic');
  await page.getByRole('button', { name: 'Đăng ký đối tác' }).click();
  assert.match(await page.locator('#partner-errors').textContent(), /khóa công khai phải là khóa P-256/);
  await shot(page, '16-partner-validation');
  await page.getByLabel('Khóa công khai của đối tác (P-256, PEM)').fill(pem);
  await page.getByRole('button', { name: 'Đăng ký đối tác' }).click();
  const secret = (await page.locator('#client-secret').textContent()).trim();
  assert.ok(secret.length >= 32, 'a client secret is issued');
  await shot(page, '17-partner-secret-once');
  await page.getByRole('link', { name: 'Xem trang đối tác' }).click();
  assert.match(await page.locator('#partner-services').textContent(), /Xác thực thông tin/);
  assert.ok(!(await page.content()).includes(secret), 'the secret is never shown again');
  await page.getByLabel('Lý do').fill('Tạm dừng để kiểm tra');
  await page.getByRole('button', { name: 'Ghi', exact: true }).click();
  assert.match(await page.locator('#partner-status').textContent(), /tạm dừng/);
  await shot(page, '18-partner-suspended');
}, [422]));
