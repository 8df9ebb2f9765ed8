#!/usr/bin/env node
// Browser test of the Brotr web page against a running `brotr-probe api`.
//
//   node e2e/web/browser-test.mjs <base-url> <out-dir>
//
// Drives Debian's Chromium (CHROMIUM, default /usr/bin/chromium) with
// playwright-core; checks accessibility with axe-core. Install its deps once
// with `npm ci --prefix e2e/web`. Expectations come from the environment:
//   EXPECT_POINTS    relays with a position = circles expected on the map (required)
//   FILTER_LABEL     label of a filter control, e.g. "Network"      } filter step
//   FILTER_VALUE     value to select or type, e.g. "tor"            } (skipped when
//   EXPECT_FILTERED  circles expected after filtering               }  unset)
//   EXPECT_RELAY     URL of a relay listed by the server            } relay-page step
//   EXPECT_MONITORS  comma-separated hex pubkeys its page must list } (skipped when unset)
//   TTI_BUDGET_MS    fail when the median time to interactive exceeds it (default 1000; 0 = report only)
// Screenshots map.png, filtered.png, relay.png (and nojs.png) go to <out-dir>.
// Every request to another origin than <base-url> is blocked and fails the test.
// Exits non-zero with a message per failed check.

import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch {
  console.error(`browser-test: playwright-core is missing; run: npm ci --prefix ${here}`);
  process.exit(2);
}
const AXE_PATH = require.resolve('axe-core/axe.min.js');

const [baseArg, outArg] = process.argv.slice(2);
if (!baseArg || !outArg) {
  console.error('usage: node e2e/web/browser-test.mjs <base-url> <out-dir>');
  process.exit(2);
}
const BASE = new URL(baseArg).origin;
const OUT = outArg;
mkdirSync(OUT, { recursive: true });

const env = process.env;
const num = (name) => {
  if (env[name] === undefined || env[name] === '') return undefined;
  const n = Number(env[name]);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`browser-test: ${name}=${env[name]} is not a whole number`);
    process.exit(2);
  }
  return n;
};
const EXPECT_POINTS = num('EXPECT_POINTS');
const EXPECT_FILTERED = num('EXPECT_FILTERED');
const FILTER_LABEL = env.FILTER_LABEL || '';
const FILTER_VALUE = env.FILTER_VALUE ?? '';
const EXPECT_RELAY = env.EXPECT_RELAY || '';
const EXPECT_MONITORS = (env.EXPECT_MONITORS || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
const TTI_BUDGET_MS = num('TTI_BUDGET_MS') ?? 1000;
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
if (EXPECT_POINTS === undefined) {
  console.error('browser-test: EXPECT_POINTS is required');
  process.exit(2);
}

// ---------------------------------------------------------------- helpers

class Fail extends Error {}
function assert(cond, message) {
  if (!cond) throw new Fail(message);
}
const results = [];
async function step(name, fn) {
  const t0 = Date.now();
  try {
    const skipped = await fn();
    if (skipped === 'skip') {
      console.log(`SKIP ${name}`);
      return;
    }
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${e instanceof Fail ? e.message : e.stack || e}`);
  }
}

const hasPos = (r) => typeof r.lat === 'number' && typeof r.lon === 'number';

// Same semantics as the server and the page.
function predicate(name, value) {
  const v = String(value).trim();
  if (v === '') return () => true;
  switch (name) {
    case 'network':
      return (r) => r.network === v;
    case 'verdict':
      return (r) => r.verdict === v;
    case 'country':
      return (r) => typeof r.country === 'string' && r.country.toUpperCase() === v.toUpperCase();
    case 'software':
      return (r) => typeof r.software === 'string' && r.software.toLowerCase().includes(v.toLowerCase());
    case 'nip': {
      const n = Number(v);
      return (r) => Array.isArray(r.nips) && r.nips.includes(n);
    }
    default:
      throw new Fail(`unknown filter control name "${name}"`);
  }
}

const blocked = [];
const pageErrors = [];
const seenOrigins = new Set();

async function newContext(browser, options = {}) {
  // bypassCSP: the page's policy (script-src 'self') rightly refuses the inline copy of
  // axe-core this test injects; the page's own scripts come from the server and obey it.
  const context = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 900 }, bypassCSP: true, ...options });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    let origin = '';
    try {
      origin = new URL(url).origin;
    } catch {}
    seenOrigins.add(origin);
    if (origin === BASE) return route.continue();
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
  context.on('page', (page) => watch(page));
  return context;
}

function watch(page) {
  page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location() && m.location().url ? m.location().url : '';
    if (/\/favicon\.ico$/.test(where)) return; // not part of this page's contract
    pageErrors.push(`${page.url()}: console.error: ${m.text()}${where ? ` (${where})` : ''}`);
  });
}

async function waitReady(page) {
  await page.waitForSelector('body[data-ready]', { timeout: 20000 }).catch(() => {
    throw new Fail('body[data-ready] never appeared (app.js did not run or did not finish)');
  });
  const ready = await page.getAttribute('body', 'data-ready');
  if (ready !== '1') {
    const msg = await page.locator('.map-error').textContent().catch(() => '');
    throw new Fail(`page reported data-ready="${ready}": ${msg}`);
  }
}

async function loadIndex(page, path = '/') {
  const res = await page.goto(path, { waitUntil: 'domcontentloaded' });
  assert(res && res.ok(), `GET ${path} answered ${res && res.status()}`);
  const type = res.headers()['content-type'] || '';
  assert(type.includes('text/html'), `GET ${path} answered content-type "${type}", want text/html`);
  await waitReady(page);
}

const circles = (page) => page.locator('svg circle.relay').count();
const renders = (page) => page.evaluate(() => Number(document.body.dataset.renders || 0));
async function waitRender(page, before) {
  await page
    .waitForFunction((n) => Number(document.body.dataset.renders || 0) > n, before, { timeout: 10000 })
    .catch(() => {
      throw new Fail('the page did not re-render after the interaction');
    });
}

async function axe(page, where) {
  await page.addScriptTag({ path: AXE_PATH });
  const res = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`),
      more: Math.max(0, v.nodes.length - 5),
    }));
  });
  if (res.length) {
    const text = res
      .map((v) => `  [${v.impact}] ${v.id}: ${v.help}\n${v.nodes.map((n) => `      ${n}`).join('\n')}${v.more ? `\n      … ${v.more} more` : ''}`)
      .join('\n');
    throw new Fail(`axe found ${res.length} violation(s) on ${where}:\n${text}`);
  }
  console.log(`     axe: no violations on ${where}`);
}

async function tableRows(page) {
  return page.$$eval('#relays tbody tr', (trs) =>
    trs.map((tr) => ({ url: tr.dataset.url, cells: Array.from(tr.cells, (td) => td.textContent.trim()) }))
  );
}

async function columnIndex(page, key) {
  const i = await page.$$eval('#relays thead th', (ths, k) => ths.findIndex((th) => th.dataset.key === k), key);
  assert(i >= 0, `no th[data-key="${key}"] in #relays`);
  return i;
}

async function setControl(locator, value) {
  const tag = await locator.evaluate((el) => el.tagName.toLowerCase());
  if (tag === 'select') await locator.selectOption(value === '' ? { index: 0 } : value);
  else await locator.fill(value);
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

// -------------------------------------------------------------------- run

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
const context = await newContext(browser);
let data;
let positioned;

try {
  await step('map data: /v1/map answers and matches EXPECT_POINTS', async () => {
    const res = await context.request.get('/v1/map', { headers: { Accept: 'application/json' } });
    assert(res.ok(), `GET /v1/map answered ${res.status()}`);
    data = await res.json();
    assert(Array.isArray(data.relays), '/v1/map has no "relays" array');
    positioned = data.relays.filter(hasPos);
    assert(
      positioned.length === EXPECT_POINTS,
      `/v1/map has ${positioned.length} relays with lat/lon, EXPECT_POINTS=${EXPECT_POINTS}`
    );
    console.log(`     ${data.relays.length} relays, ${positioned.length} with a position`);
  });
  if (!data) throw new Fail('cannot go on without /v1/map');

  const page = await context.newPage();

  await step('map: one circle.relay per positioned relay', async () => {
    await loadIndex(page);
    const n = await circles(page);
    assert(n === EXPECT_POINTS, `map shows ${n} circle.relay, want EXPECT_POINTS=${EXPECT_POINTS}`);
    const label = await page.getAttribute('#map svg', 'aria-label');
    const role = await page.getAttribute('#map svg', 'role');
    assert(role === 'img', `map svg role="${role}", want "img"`);
    assert(label === `Map of ${n} relays`, `map svg aria-label="${label}", want "Map of ${n} relays"`);
    const verdicts = await page.$$eval('svg circle.relay', (cs) => {
      const m = {};
      for (const c of cs) m[c.dataset.verdict] = (m[c.dataset.verdict] || 0) + 1;
      return m;
    });
    const want = {};
    for (const r of positioned) want[r.verdict] = (want[r.verdict] || 0) + 1;
    for (const v of Object.keys(want))
      assert(verdicts[v] === want[v], `map has ${verdicts[v] || 0} ${v} circles, /v1/map has ${want[v]}`);
    assert((await page.locator('#map .legend li').count()) >= 4, 'map legend is missing');
    await page.screenshot({ path: join(OUT, 'map.png') });
  });

  await step(`filter: ${FILTER_LABEL || '(unset)'} = ${FILTER_VALUE}`, async () => {
    if (!FILTER_LABEL || EXPECT_FILTERED === undefined) return 'skip';
    await loadIndex(page);
    const control = page.locator('#filters').getByLabel(FILTER_LABEL, { exact: true });
    assert((await control.count()) === 1, `no single form control labelled "${FILTER_LABEL}" in #filters`);
    const name = await control.getAttribute('name');
    const before = await renders(page);
    await setControl(control, FILTER_VALUE);
    await waitRender(page, before);

    const pred = predicate(name, FILTER_VALUE);
    const all = data.relays.filter(pred);
    const withPos = all.filter(hasPos);
    const n = await circles(page);
    assert(n === EXPECT_FILTERED, `after filtering the map shows ${n} circles, want EXPECT_FILTERED=${EXPECT_FILTERED}`);
    assert(
      withPos.length === EXPECT_FILTERED,
      `/v1/map has ${withPos.length} positioned relays matching ${name}=${FILTER_VALUE}, EXPECT_FILTERED=${EXPECT_FILTERED}`
    );
    const shownUrls = new Set(await page.$$eval('svg circle.relay', (cs) => cs.map((c) => c.dataset.url)));
    for (const r of withPos) assert(shownUrls.has(r.url), `circle for ${r.url} is missing after filtering`);

    const matching = new Set(all.map((r) => r.url));
    const rows = await tableRows(page);
    assert(rows.length === Math.min(100, all.length), `table shows ${rows.length} rows, want ${Math.min(100, all.length)}`);
    for (const row of rows) assert(matching.has(row.url), `table row ${row.url} does not match ${name}=${FILTER_VALUE}`);
    const count = (await page.textContent('#count')).trim();
    const want = all.length === 0 ? 'Showing 0 of 0 relays' : `Showing 1\u2013${rows.length} of ${all.length} relay${all.length === 1 ? '' : 's'}`;
    assert(count === want, `#count says "${count}", want "${want}"`);
    const q = new URL(page.url()).searchParams;
    assert(q.get(name) === FILTER_VALUE.trim(), `URL ${page.url()} does not carry ${name}=${FILTER_VALUE}`);
    await page.screenshot({ path: join(OUT, 'filtered.png') });
    console.log(`     ${n} circles, ${all.length} matching relays, ${rows.length} rows`);
  });

  await step('sort: RTT header sorts ascending, then descending (keyboard)', async () => {
    await loadIndex(page);
    const col = await columnIndex(page, 'rtt_ms');
    const link = page.locator('#relays thead th[data-key="rtt_ms"] a');
    const parse = (rows) =>
      rows.map((r) => {
        const t = r.cells[col].replace(/[^\d.-]/g, '');
        return t === '' ? null : Number(t);
      });
    const check = (vals, dir) => {
      let seenNull = false;
      for (let i = 0; i < vals.length; i++) {
        if (vals[i] === null) {
          seenNull = true;
          continue;
        }
        assert(!seenNull, `RTT ${dir}: a value (${vals[i]}) follows an empty RTT at row ${i + 1}`);
        if (i > 0 && vals[i - 1] !== null)
          assert(dir === 'asc' ? vals[i - 1] <= vals[i] : vals[i - 1] >= vals[i], `RTT ${dir}: row ${i} has ${vals[i - 1]}, row ${i + 1} has ${vals[i]}`);
      }
    };
    const rtts = data.relays.map((r) => r.rtt_ms).filter((v) => typeof v === 'number');

    let before = await renders(page);
    await link.click();
    await waitRender(page, before);
    let aria = await page.getAttribute('#relays thead th[data-key="rtt_ms"]', 'aria-sort');
    assert(aria === 'ascending', `after one click aria-sort="${aria}", want "ascending"`);
    let vals = parse(await tableRows(page));
    check(vals, 'asc');
    if (rtts.length) assert(vals[0] === Math.min(...rtts), `first row RTT ${vals[0]}, smallest in /v1/map is ${Math.min(...rtts)}`);

    before = await renders(page);
    await link.focus();
    await page.keyboard.press('Enter');
    await waitRender(page, before);
    aria = await page.getAttribute('#relays thead th[data-key="rtt_ms"]', 'aria-sort');
    assert(aria === 'descending', `after a second activation aria-sort="${aria}", want "descending"`);
    vals = parse(await tableRows(page));
    check(vals, 'desc');
    if (rtts.length) assert(vals[0] === Math.max(...rtts), `first row RTT ${vals[0]}, largest in /v1/map is ${Math.max(...rtts)}`);
    const q = new URL(page.url()).searchParams;
    assert(q.get('sort') === 'rtt_ms' && q.get('order') === 'desc', `URL ${page.url()} does not carry sort=rtt_ms&order=desc`);
  });

  await step('map click: a circle opens a tooltip with a link to its relay page', async () => {
    if (EXPECT_POINTS === 0) return 'skip';
    await loadIndex(page);
    const last = page.locator('svg circle.relay').last();
    const url = await last.getAttribute('data-url');
    const box = await last.boundingBox();
    assert(box, 'the top-most circle has no box');
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    const tip = page.locator('#map .tip');
    await tip.waitFor({ state: 'visible', timeout: 5000 }).catch(() => {
      throw new Fail('no tooltip after clicking a circle');
    });
    const hrefs = await tip.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    const want = `/relay?url=${encodeURIComponent(url)}`;
    assert(hrefs.includes(want), `tooltip links ${JSON.stringify(hrefs)}, want one to ${want}`);
    await axe(page, 'the index page with the map tooltip open');
    await page.keyboard.press('Escape');
    assert(await tip.isHidden(), 'Escape does not close the tooltip');
  });

  await step('relay page: reached from the table, lists EXPECT_MONITORS', async () => {
    if (!EXPECT_RELAY) return 'skip';
    const relay = data.relays.find((r) => r.url === EXPECT_RELAY);
    assert(relay, `EXPECT_RELAY ${EXPECT_RELAY} is not in /v1/map`);
    await loadIndex(page);
    // Narrow the table down with the filters so that the relay is on screen.
    const form = page.locator('#filters');
    const narrow = [
      ['network', relay.network],
      ['verdict', relay.verdict],
      ['country', relay.country],
      ['software', relay.software],
    ];
    for (const [name, value] of narrow) {
      if (typeof value !== 'string' || value === '') continue;
      const before = await renders(page);
      await setControl(form.locator(`[name="${name}"]`), value);
      await waitRender(page, before);
    }
    const row = page.locator(`#relays tbody tr[data-url=${JSON.stringify(EXPECT_RELAY)}]`);
    for (let i = 0; i < 200 && (await row.count()) === 0; i++) {
      const more = page.locator('#more');
      if (!(await more.isVisible())) break;
      await more.click();
    }
    assert((await row.count()) === 1, `${EXPECT_RELAY} is not in the table after filtering`);
    await Promise.all([page.waitForURL(/\/relay\?/), row.locator('a').first().click()]);
    await page.waitForLoadState('domcontentloaded');
    const h1 = (await page.textContent('h1')) || '';
    assert(h1.includes(EXPECT_RELAY), `relay page <h1> is "${h1.trim()}", want it to contain ${EXPECT_RELAY}`);
    const listed = (await page.$$eval('#monitors tr[data-monitor]', (trs) => trs.map((tr) => tr.dataset.monitor))).map((s) =>
      s.toLowerCase()
    );
    for (const m of EXPECT_MONITORS) assert(listed.includes(m), `monitor ${m} is not listed in #monitors (listed: ${listed.join(', ') || 'none'})`);
    assert((await page.locator('#history').count()) === 1, 'relay page has no #history table');
    await page.screenshot({ path: join(OUT, 'relay.png'), fullPage: true });
    await axe(page, `the relay page of ${EXPECT_RELAY}`);
    console.log(`     ${listed.length} monitors listed`);
  });

  await step('axe: index page', async () => {
    await loadIndex(page);
    await axe(page, 'the index page');
    // And once the table has been rendered by the page itself.
    const before = await renders(page);
    await page.locator('#relays thead th[data-key="url"] a').click();
    await waitRender(page, before);
    await axe(page, 'the index page after a client-side sort');
  });

  await step('without JavaScript: server-rendered table and pages', async () => {
    const nojs = await newContext(browser, { javaScriptEnabled: false });
    try {
      const p = await nojs.newPage();
      const res = await p.goto('/', { waitUntil: 'domcontentloaded' });
      assert(res && res.ok(), `GET / without JS answered ${res && res.status()}`);
      const rows = await p.locator('#relays tbody tr').count();
      assert(rows > 0, 'the server-rendered table has no rows');
      assert(rows <= 100, `the server rendered ${rows} rows, want at most 100 per page`);
      if (data.relays.length > 100) {
        const next = await p.locator('#pages a[rel="next"]').count();
        assert(next === 1, `${data.relays.length} relays but no #pages a[rel="next"]`);
      }
      assert((await p.locator('form#filters[method="get"]').count()) === 1, 'no form#filters with method=get');
      assert((await p.locator('svg circle.relay').count()) === 0, 'circles without JavaScript?');
      await p.screenshot({ path: join(OUT, 'nojs.png') });
      console.log(`     ${rows} rows${data.relays.length > 100 ? ', Next link present' : ''}`);
    } finally {
      await nojs.close();
    }
  });

  await step('time to interactive and bundle size', async () => {
    const times = [];
    for (let i = 0; i < 3; i++) {
      // The page's own Content-Security-Policy enforced: anything it blocks is a console
      // error, which the last step reports.
      const c = await newContext(browser, { bypassCSP: false });
      try {
        const p = await c.newPage();
        await loadIndex(p);
        const t = await p.evaluate(() => {
          const m = performance.getEntriesByName('brotr-ready', 'mark')[0];
          return m ? m.startTime : null;
        });
        assert(t !== null, "no performance mark 'brotr-ready'");
        times.push(t);
      } finally {
        await c.close();
      }
    }
    const tti = Math.round(median(times));
    console.log(`time to interactive: ${tti} ms (loads: ${times.map((t) => Math.round(t)).join(', ')} ms; ${EXPECT_POINTS} points)`);
    const assets = await page.evaluate(() => [
      ...Array.from(document.querySelectorAll('script[src]'), (s) => s.getAttribute('src')),
      ...Array.from(document.querySelectorAll('link[rel="stylesheet"]'), (l) => l.getAttribute('href')),
    ]);
    for (const a of assets) {
      const res = await context.request.get(a);
      assert(res.ok(), `GET ${a} answered ${res.status()}`);
      const body = await res.body();
      console.log(`bundle ${a}: ${body.length} bytes (${gzipSync(body, { level: 9 }).length} gzip)`);
    }
    if (TTI_BUDGET_MS > 0) assert(tti <= TTI_BUDGET_MS, `time to interactive ${tti} ms is over the budget of ${TTI_BUDGET_MS} ms`);
  });

  await step('no request left the server under test', async () => {
    assert(blocked.length === 0, `blocked requests to other hosts:\n  ${[...new Set(blocked)].join('\n  ')}`);
    assert(pageErrors.length === 0, `errors in the page:\n  ${pageErrors.join('\n  ')}`);
  });
} catch (e) {
  results.push({ name: 'setup', ok: false });
  console.log(`FAIL ${e instanceof Fail ? e.message : e.stack || e}`);
} finally {
  await browser.close();
}

const failed = results.filter((r) => !r.ok).length;
const passed = results.length - failed;
console.log(`screenshots in ${OUT}`);
console.log(`browser-test: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
