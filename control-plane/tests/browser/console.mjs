// Drives the console of a running `gantry serve` in headless Chromium:
//   node console.mjs URL TOKEN SCREENSHOT_DIR
// The server must hold the functions console_browser.rs deploys (greet, chain-a ->
// chain-b -> chain-c, the warm function warm-fn). Every step waits for a condition on
// the page; any failed step, page error, console error or CSP violation fails the run.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, token, shots] = process.argv.slice(2);
if (!url || !token || !shots) {
  console.error('usage: node console.mjs URL TOKEN SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 30_000;
const problems = [];

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

function watch(page, label) {
  page.on('pageerror', (err) => problems.push(`${label}: page error: ${err.message}`));
  page.on('console', (msg) => {
    // The refused sign-in (401) and the input the server refuses (400) are expected.
    if (msg.type() === 'error' && !/status of (400|401) \(/.test(msg.text())) {
      problems.push(`${label}: console error: ${msg.text()}`);
    }
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As root (CI containers) Chromium refuses to start with its sandbox on.
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
try {
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await desktop.newPage();
  page.setDefaultTimeout(WAIT);
  watch(page, 'desktop');

  // The page and its headers: a strict policy, no inline scripts allowed.
  const first = await page.goto(`${url}/ui`);
  expect(new URL(page.url()).pathname === '/ui/', `/ui redirects to /ui/ (at ${page.url()})`);
  const csp = first.headers()['content-security-policy'] || '';
  expect(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `strict CSP, got ${csp}`);

  // Sign in: a wrong token is refused, the right one opens the functions.
  await page.getByLabel('API token').waitFor();
  // Reported, not asserted: timings are no test's business, but a person reads them.
  const paint = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
  console.log(`first contentful paint: ${paint === undefined ? 'unknown' : `${Math.round(paint)} ms`}`);
  await page.keyboard.press('Tab');
  await page.getByLabel('API token').fill('gantry_wrong_token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'refused' }).waitFor();
  await shot(page, 'signin-desktop');
  await page.getByLabel('API token').fill(token);
  await page.getByLabel('API token').press('Enter');

  // Functions: the deployed ones with their state; the search narrows the list.
  await page.locator('tr[data-function="greet"]').waitFor();
  await page.locator('tr[data-function="warm-fn"]').waitFor();
  await page.getByLabel('Search').fill('chain');
  await page.locator('tr[data-function="greet"]').waitFor({ state: 'detached' });
  expect(await page.locator('tr[data-function="chain-a"]').count() === 1, 'search keeps chain-a');
  await page.getByLabel('Search').fill('');
  await page.locator('tr[data-function="greet"]').waitFor();
  await shot(page, 'functions-desktop');

  // Keyboard: the first Tab reaches a real link, with a visible focus ring.
  await page.locator('body').focus();
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => {
    const el = document.activeElement;
    return { tag: el.tagName, outline: getComputedStyle(el).outlineStyle };
  });
  expect(focused.tag === 'A' && focused.outline !== 'none', `Tab focuses a link with an outline: ${JSON.stringify(focused)}`);

  // A function: invoke through the form generated from its input_schema.
  await page.locator('tr[data-function="greet"] a').first().click();
  await page.getByRole('heading', { name: 'Invoke' }).waitFor();
  let invokes = 0;
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().includes(':invoke')) invokes += 1;
  });
  // Refused before sending: the required name is empty and times is out of range.
  await page.getByLabel('times').fill('9');
  await page.getByRole('button', { name: 'Invoke' }).click();
  await page.getByRole('alert').filter({ hasText: 'Not sent' }).waitFor();
  const summary = await page.getByRole('alert').filter({ hasText: 'Not sent' }).textContent();
  expect(/name is required/.test(summary) && /at most 5/.test(summary), `form errors: ${summary}`);
  expect(invokes === 0, 'an invalid input is not sent');
  expect(await page.getByLabel('name (required)').getAttribute('aria-invalid') === 'true', 'name marked invalid');
  await shot(page, 'invoke-refused-desktop');
  // Passed by the form, refused by the server's own check of the whole schema.
  await page.getByLabel('name (required)').fill('nobody');
  await page.getByLabel('times').fill('1');
  await page.getByRole('button', { name: 'Invoke' }).click();
  await page.locator('#invoke-result', { hasText: 'Refused by the server' }).waitFor();
  expect(invokes === 1, `the refused input was sent once, saw ${invokes}`);
  await page.getByLabel('name (required)').fill('Ada');
  await page.getByLabel('times').fill('2');
  await page.getByLabel('mood').selectOption('happy');
  await page.getByRole('button', { name: 'Invoke' }).click();
  const result = page.locator('#invoke-result .result[data-status="success"]');
  await result.waitFor();
  expect(invokes === 2, `two invokes sent, saw ${invokes}`);
  const output = await result.locator('pre').textContent();
  expect(/"name": "Ada"/.test(output) && /"times": 2/.test(output), `output shown: ${output}`);
  // The charts have the execution just run (and the ones the test ran before).
  const charts = page.locator('.charts');
  await page.waitForFunction(() => Number(document.querySelector('.charts')?.dataset.finished) > 0);
  expect(await charts.locator('figure[data-points]').count() === 4, 'four charts');
  // The versions diff: v1 -> v2 changed the description, the old line first.
  const changes = await page.locator('pre.diff').evaluate((pre) =>
    [...pre.children].filter((el) => el.tagName !== 'SPAN').map((el) => `${el.tagName} ${el.textContent.replace(/\s+/g, ' ').trim()}`));
  expect(changes.length === 2 && changes[0].startsWith('DEL - "description": "Echoes a greeting request"')
    && changes[1].startsWith('INS + "description": "Echoes a greeting request, politely"'), `diff ${JSON.stringify(changes)}`);
  await shot(page, 'function-desktop');

  // The execution: success, and its logs arrive over the event stream.
  await result.locator('a').click();
  await page.locator('h1 .badge.success').waitFor();
  await page.locator('#logs', { hasText: 'echo got input' }).waitFor();
  await page.getByText(/the execution ended \(success\)/).waitFor();
  await shot(page, 'execution-desktop');

  // Executions, filtered, live: an execution enqueued now shows up without a reload.
  await page.getByRole('link', { name: 'Executions', exact: true }).first().click();
  await page.getByLabel('Function').selectOption('greet');
  await page.getByLabel('Status').selectOption('success');
  await page.locator('tr[data-execution]').first().waitFor();
  const before = await page.locator('tr[data-execution]').count();
  const enqueued = await page.evaluate(async (name) => {
    const response = await fetch(`/v1/functions/${name}:enqueue`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${sessionStorage.getItem('gantry-token')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'Live' }),
    });
    return (await response.json()).executionId;
  }, 'greet');
  await page.locator(`tr[data-execution="${enqueued}"]`).waitFor();
  expect(await page.locator('tr[data-execution]').count() === before + 1, 'the list grew by one');
  // A refresh keeps the keyboard focus on the same row's link.
  const row = page.locator('tr[data-execution]').first();
  const rowId = await row.getAttribute('data-execution');
  await row.locator('a').first().focus();
  const seen = Number(await page.locator('[data-refreshes]').getAttribute('data-refreshes'));
  await page.waitForFunction((n) => Number(document.querySelector('[data-refreshes]').dataset.refreshes) > n, seen);
  const kept = await page.evaluate(() => document.activeElement.closest('tr')?.dataset.execution);
  expect(kept === rowId, `focus kept on ${rowId} across a refresh, now on ${kept}`);
  await page.getByLabel('Trigger').selectOption('chain');
  await page.getByText('No executions match.').waitFor();
  await page.getByLabel('Trigger').selectOption('');
  await shot(page, 'executions-desktop');

  // A chain tree of three functions: run chain-a from its form, then open its tree.
  await page.goto(`${url}/ui/#/functions/chain-a`);
  await page.getByRole('button', { name: 'Invoke' }).waitFor();
  await page.getByLabel('Input (JSON)').fill('{"step": 1}');
  await page.getByRole('button', { name: 'Invoke' }).click();
  await page.locator('#invoke-result .result[data-status="success"] a').click();
  await page.getByRole('link', { name: 'Chain tree' }).click();
  await page.waitForFunction(() => document.querySelectorAll('svg.tree a.node.success').length === 3);
  const names = await page.locator('svg.tree a.node text.fn').allTextContents();
  expect(['chain-a', 'chain-b', 'chain-c'].every((n) => names.includes(n)), `tree nodes ${names}`);
  await shot(page, 'tree-desktop');
  const leaf = page.locator('svg.tree a.node', { hasText: 'chain-c' });
  const leafId = await leaf.getAttribute('data-execution');
  await leaf.click();
  await page.waitForURL(`**/ui/#/executions/${leafId}`);
  await page.locator('.facts a', { hasText: 'chain-c v1' }).waitFor();
  await page.locator('h1 .badge.success').waitFor();
  // The trigger filter is the server's (a page of the newest 200 could miss older
  // matches): the chained runs of chain-b and chain-c, not chain-a's own.
  const asked = page.waitForRequest((request) => new URL(request.url()).searchParams.get('trigger') === 'chain');
  await page.goto(`${url}/ui/#/executions?trigger=chain`);
  await asked;
  await page.locator(`tr[data-execution="${leafId}"]`).waitFor();
  const triggers = await page.locator('tr[data-execution] td:nth-child(4)').allTextContents();
  expect(triggers.length >= 2 && triggers.every((t) => t === 'chain'), `only chained runs listed: ${triggers}`);

  // Warm pools: the warm function's instance.
  await page.getByRole('link', { name: 'Warm pools' }).click();
  await page.locator('section[data-function="warm-fn"] tr[data-instance]').first().waitFor();
  await shot(page, 'pools-desktop');

  // A phone's width, signed in from the address gantry serve prints.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  small.setDefaultTimeout(WAIT);
  watch(small, 'phone');
  await small.goto(`${url}/ui/#token=${encodeURIComponent(token)}`);
  await small.locator('tr[data-function="greet"]').waitFor();
  expect(!small.url().includes(token), 'the token leaves the address bar');
  const wide = await small.evaluate(() => document.documentElement.scrollWidth);
  expect(wide <= 390, `no sideways page scroll on a phone (width ${wide})`);
  await shot(small, 'functions-phone');
  for (const [route, ready, name] of [
    ['#/functions/greet', '.charts', 'function-phone'],
    ['#/executions', 'tr[data-execution]', 'executions-phone'],
    ['#/pools', 'tr[data-instance]', 'pools-phone'],
  ]) {
    await small.goto(`${url}/ui/${route}`);
    await small.locator(ready).first().waitFor();
    await shot(small, name);
  }
  await small.goto(`${url}/ui/#/executions/${enqueued}`);
  await small.locator('h1 .badge.success').waitFor();
  await shot(small, 'execution-phone');
  await phone.close();
  await desktop.close();
} catch (err) {
  problems.unshift(err.stack || String(err));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`console checks passed; screenshots in ${shots}`);
