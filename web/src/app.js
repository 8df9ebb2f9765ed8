// Brotr: progressive enhancement of the server-rendered relay pages.
//
// Without JavaScript the index page is a plain form + table that the server
// filters, sorts and pages. With it, this module loads every relay from the
// map endpoint (`#map[data-src]`), draws them on a world map, and filters and
// sorts the table in the browser with the same semantics as the server.
// When the page is interactive it calls performance.mark('brotr-ready') and sets
// <body data-ready="1"> (or data-ready="error" when the data could not be loaded).
//
// Nothing is fetched from any other host: the world outline (world-atlas
// countries-110m) is bundled into this file.

import { geoEqualEarth, geoPath } from 'd3-geo';
import { feature, mesh } from 'topojson-client';
import world from 'world-atlas/countries-110m.json';

const PAGE = 100;
const VERDICTS = ['online', 'offline', 'disputed', 'unknown'];
const VERDICT_TEXT = {
  online: 'Online',
  offline: 'Offline',
  disputed: 'Disputed (monitors disagree)',
  unknown: 'Unknown',
};
// Paint order: rarer, more interesting verdicts on top.
const PAINT_RANK = { unknown: 0, online: 1, offline: 2, disputed: 3 };
const NUMERIC_KEYS = new Set(['rtt_ms', 'monitors']);
const SORT_KEYS = new Set(['url', 'network', 'verdict', 'rtt_ms', 'country', 'software', 'monitors']);
const FILTER_NAMES = ['network', 'nip', 'software', 'country', 'verdict'];
const DASH = '\u2014';

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);

// ---------------------------------------------------------------- filtering

/** Reads the filter controls into a normalised filter. */
function readFilter(form) {
  const v = (name) => (form.elements[name] ? String(form.elements[name].value).trim() : '');
  const nipText = v('nip');
  const nip = nipText === '' ? null : Number(nipText);
  return {
    network: v('network'),
    nip: Number.isInteger(nip) ? nip : null,
    software: v('software').toLowerCase(),
    country: v('country').toUpperCase(),
    verdict: v('verdict'),
  };
}

/** Same semantics as the server: network equal; nip contained in nips;
 *  software case-insensitive substring; country equal case-insensitive;
 *  verdict equal. Empty fields do not filter. */
function matches(r, f) {
  if (f.network && r.network !== f.network) return false;
  if (f.verdict && r.verdict !== f.verdict) return false;
  if (f.country && r._country !== f.country) return false;
  if (f.software && (r._software === null || !r._software.includes(f.software))) return false;
  if (f.nip !== null && !(Array.isArray(r.nips) && r.nips.includes(f.nip))) return false;
  return true;
}

function isActive(f) {
  return !!(f.network || f.verdict || f.country || f.software || f.nip !== null);
}

// ------------------------------------------------------------------ sorting

/** Comparator for a column: nulls last in both directions, ties by URL. */
function comparator(key, order) {
  const dir = order === 'desc' ? -1 : 1;
  const numeric = NUMERIC_KEYS.has(key);
  return (a, b) => {
    const va = a[key];
    const vb = b[key];
    const na = va === null || va === undefined || va === '';
    const nb = vb === null || vb === undefined || vb === '';
    let c = 0;
    if (na || nb) {
      if (!(na && nb)) return na ? 1 : -1;
    } else if (numeric) {
      c = (va - vb) * dir;
    } else if (va !== vb) {
      c = (va < vb ? -1 : 1) * dir;
    }
    if (c === 0 && key !== 'url') c = a.url < b.url ? -1 : a.url > b.url ? 1 : 0;
    return c;
  };
}

// -------------------------------------------------------------------- table

function cell(v) {
  return v === null || v === undefined || v === '' ? DASH : esc(v);
}

function rowHtml(r) {
  return (
    `<tr data-url="${esc(r.url)}"><td><a href="/relay?url=${encodeURIComponent(r.url)}">${esc(r.url)}</a></td>` +
    `<td>${cell(r.network)}</td>` +
    `<td><span class="verdict verdict-${r.verdict}">${r.verdict}</span></td>` +
    `<td>${cell(r.rtt_ms)}</td><td>${cell(r.country)}</td><td>${cell(r.software)}</td><td>${cell(r.monitors)}</td></tr>`
  );
}

// ---------------------------------------------------------------------- map

function symbol(verdict, r) {
  return `<svg class="sym" width="14" height="14" viewBox="0 0 14 14" aria-hidden="true" focusable="false"><circle class="relay-sym" data-verdict="${verdict}" cx="7" cy="7" r="${r}"/></svg>`;
}

function radiusFor(verdict, base) {
  if (verdict === 'disputed') return base + 1;
  if (verdict === 'unknown') return Math.max(1.5, base - 0.8);
  return base;
}

/** Draws the world and one <circle class="relay"> per positioned relay.
 *  Returns the circle nodes in paint order and the projected relays. */
function drawMap(section, relays) {
  const width = Math.max(320, Math.min(1600, Math.round(section.clientWidth || 960)));
  const sphere = { type: 'Sphere' };
  const projection = geoEqualEarth().fitWidth(width, sphere);
  const path = geoPath(projection).digits(1);
  const height = Math.ceil(path.bounds(sphere)[1][1]) + 1;
  const countries = feature(world, world.objects.countries);
  const borders = mesh(world, world.objects.countries, (a, b) => a !== b);
  const base = width >= 720 ? 3 : 2.2;

  const placed = [];
  for (const r of relays) {
    if (typeof r.lat !== 'number' || typeof r.lon !== 'number') continue;
    const p = projection([r.lon, r.lat]);
    if (!p || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) continue;
    r._x = Math.round(p[0] * 10) / 10;
    r._y = Math.round(p[1] * 10) / 10;
    placed.push(r);
  }
  placed.sort((a, b) => PAINT_RANK[a.verdict] - PAINT_RANK[b.verdict] || a._i - b._i);

  const radius = {};
  for (const v of VERDICTS) radius[v] = radiusFor(v, base);
  const parts = new Array(placed.length);
  for (let i = 0; i < placed.length; i++) {
    const r = placed[i];
    parts[i] = `<circle class="relay" data-url="${esc(r.url)}" data-verdict="${r.verdict}" cx="${r._x}" cy="${r._y}" r="${radius[r.verdict]}"/>`;
  }

  const legend = VERDICTS.map(
    (v) => `<li>${symbol(v, radiusFor(v, 3.5))}<span>${VERDICT_TEXT[v]}</span> <span class="n" data-verdict="${v}"></span></li>`
  ).join('');

  section.innerHTML =
    `<svg class="world" viewBox="0 0 ${width} ${height}" role="img" aria-label="Map of ${placed.length} relays" preserveAspectRatio="xMidYMid meet">` +
    `<path class="sphere" d="${path(sphere)}"/><path class="land" d="${path(countries)}"/>` +
    `<path class="borders" d="${path(borders)}"/><g class="relays">${parts.join('')}</g></svg>` +
    `<ul class="legend" aria-label="Legend">${legend}</ul>` +
    `<p class="map-note"></p>`;

  const svg = section.querySelector('svg.world');
  const g = svg.querySelector('g.relays');
  const nodes = Array.from(g.children);
  return { svg, g, nodes, placed, width };
}

// --------------------------------------------------------------------- app

function parseSort(params) {
  const key = params.get('sort');
  if (!key || !SORT_KEYS.has(key)) return { key: null, order: 'asc' };
  return { key, order: params.get('order') === 'desc' ? 'desc' : 'asc' };
}

function fail(section, message) {
  if (section) {
    const p = document.createElement('p');
    p.className = 'map-error';
    p.textContent = message;
    section.replaceChildren(p);
  }
  document.body.dataset.ready = 'error';
}

async function initIndex(section) {
  const form = document.getElementById('filters');
  const table = document.getElementById('relays');
  const tbody = table && table.tBodies[0];
  const count = document.getElementById('count');
  const pages = document.getElementById('pages');

  let payload;
  try {
    const res = await fetch(section.dataset.src, { headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    payload = await res.json();
    if (!payload || !Array.isArray(payload.relays)) throw new Error('no relays in the answer');
  } catch (e) {
    fail(section, `The map could not be loaded (${e.message}). The table below still works.`);
    return;
  }

  const relays = payload.relays;
  for (let i = 0; i < relays.length; i++) {
    const r = relays[i];
    r._i = i;
    if (!VERDICTS.includes(r.verdict)) r.verdict = 'unknown';
    r._country = typeof r.country === 'string' ? r.country.toUpperCase() : null;
    r._software = typeof r.software === 'string' ? r.software.toLowerCase() : null;
  }

  const map = drawMap(section, relays);
  const pass = new Uint8Array(relays.length);
  const params = new URLSearchParams(location.search);
  const sort = parseSort(params);
  let rows = []; // filtered and sorted relays behind the table
  let shown = 0; // rows of `rows` in the table

  // Controls left empty by the server but present in the URL: fill them in.
  if (form) {
    for (const name of FILTER_NAMES) {
      const el = form.elements[name];
      if (el && !el.value && params.get(name)) el.value = params.get(name);
    }
  }

  const ths = table ? Array.from(table.querySelectorAll('thead th[data-key]')) : [];
  const more = document.createElement('button');
  more.type = 'button';
  more.id = 'more';
  more.className = 'more';
  more.hidden = true;
  if (table) table.after(more);

  // Map tooltip (click a circle: list the relays under the pointer with links).
  const tip = document.createElement('div');
  tip.className = 'tip';
  tip.hidden = true;
  tip.setAttribute('role', 'dialog');
  tip.setAttribute('aria-label', 'Relays at this point');
  section.append(tip);
  const note = section.querySelector('.map-note');
  const legendCounts = Object.fromEntries(
    VERDICTS.map((v) => [v, section.querySelector(`.legend .n[data-verdict="${v}"]`)])
  );

  function updateMap(f) {
    const active = isActive(f);
    const keep = [];
    const perVerdict = { online: 0, offline: 0, disputed: 0, unknown: 0 };
    for (let i = 0; i < map.placed.length; i++) {
      const r = map.placed[i];
      if (!active || pass[r._i]) {
        keep.push(map.nodes[i]);
        perVerdict[r.verdict]++;
      }
    }
    if (active || keep.length !== map.g.childElementCount) map.g.replaceChildren(...keep);
    map.svg.setAttribute('aria-label', `Map of ${keep.length} relays`);
    for (const v of VERDICTS) legendCounts[v].textContent = `(${perVerdict[v]})`;
    const total = active ? rows.length : relays.length;
    const unplaced = total - keep.length;
    note.textContent =
      total === 0
        ? 'No relay matches these filters.'
        : unplaced > 0
          ? `${unplaced} of the ${total} relays have no known location (for example Tor, I2P or Lokinet relays) and are listed in the table only.`
          : '';
    tip.hidden = true;
  }

  function updateCount() {
    const n = rows.length;
    const noun = n === 1 ? 'relay' : 'relays';
    count.textContent = n === 0 ? 'Showing 0 of 0 relays' : `Showing 1\u2013${shown} of ${n} ${noun}`;
    more.hidden = shown >= n;
    more.textContent = `Show ${Math.min(PAGE, n - shown)} more`;
  }

  function renderTable() {
    if (!tbody) return;
    shown = Math.min(PAGE, rows.length);
    let html = '';
    for (let i = 0; i < shown; i++) html += rowHtml(rows[i]);
    tbody.innerHTML = html;
    if (pages) pages.hidden = true;
    updateCount();
  }

  function query(extra) {
    const q = new URLSearchParams();
    if (form) {
      for (const name of FILTER_NAMES) {
        const el = form.elements[name];
        const value = el ? String(el.value).trim() : '';
        if (value) q.set(name, value);
      }
    }
    const s = extra || sort;
    if (s.key) {
      q.set('sort', s.key);
      q.set('order', s.order);
    }
    const text = q.toString();
    return text ? `/?${text}` : '/';
  }

  function updateSortUi() {
    for (const th of ths) {
      const key = th.dataset.key;
      if (key === sort.key) th.setAttribute('aria-sort', sort.order === 'desc' ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
      const a = th.querySelector('a');
      if (a) {
        const next = key === sort.key && sort.order === 'asc' ? 'desc' : 'asc';
        a.setAttribute('href', query({ key, order: next }));
      }
    }
  }

  function compute() {
    const f = form ? readFilter(form) : readFilter({ elements: {} });
    rows = [];
    for (const r of relays) {
      const ok = matches(r, f);
      pass[r._i] = ok ? 1 : 0;
      if (ok) rows.push(r);
    }
    if (sort.key) rows.sort(comparator(sort.key, sort.order));
    return f;
  }

  function apply() {
    const f = compute();
    updateMap(f);
    renderTable();
    updateSortUi();
    history.replaceState(history.state, '', query());
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  }

  let pending = 0;
  function schedule() {
    if (!pending) pending = setTimeout(() => ((pending = 0), apply()), 0);
  }

  // Initial state: circles follow the current filter; the server's table stays
  // as rendered until the visitor changes something.
  const initial = compute();
  updateMap(initial);
  updateSortUi();

  if (form) {
    form.addEventListener('input', schedule);
    form.addEventListener('change', schedule);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearTimeout(pending);
      pending = 0;
      apply();
    });
  }

  for (const th of ths) {
    const a = th.querySelector('a');
    if (!a) continue;
    a.addEventListener('click', (e) => {
      if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
      e.preventDefault();
      const key = th.dataset.key;
      if (sort.key === key) sort.order = sort.order === 'asc' ? 'desc' : 'asc';
      else {
        sort.key = key;
        sort.order = 'asc';
      }
      apply();
    });
  }

  more.addEventListener('click', () => {
    const end = Math.min(rows.length, shown + PAGE);
    let html = '';
    for (let i = shown; i < end; i++) html += rowHtml(rows[i]);
    tbody.insertAdjacentHTML('beforeend', html);
    shown = end;
    updateCount();
  });

  // ------------------------------------------------------------ tooltip
  const nodeRelay = new WeakMap(map.nodes.map((node, i) => [node, map.placed[i]]));
  function closeTip() {
    tip.hidden = true;
  }

  map.svg.addEventListener('click', (e) => {
    const ctm = map.svg.getScreenCTM();
    if (!ctm) return;
    const pt = new DOMPoint(e.clientX, e.clientY).matrixTransform(ctm.inverse());
    const reach = 8 / ctm.a; // 8 CSS pixels in viewBox units
    const active = isActive(form ? readFilter(form) : { nip: null });
    const near = [];
    for (const r of map.placed) {
      if (active && !pass[r._i]) continue;
      const d = Math.hypot(r._x - pt.x, r._y - pt.y);
      if (d <= reach) near.push([d, r]);
    }
    if (near.length === 0) {
      closeTip();
      return;
    }
    // The circle under the pointer (the top-most one) comes first.
    const hit = e.target instanceof Element ? nodeRelay.get(e.target) : undefined;
    near.sort((a, b) => (a[1] === hit ? -1 : b[1] === hit ? 1 : a[0] - b[0]));
    const list = near
      .slice(0, 8)
      .map(
        ([, r]) =>
          `<li><a href="/relay?url=${encodeURIComponent(r.url)}">${esc(r.url)}</a> ` +
          `<span class="verdict verdict-${r.verdict}">${r.verdict}</span>` +
          `${r.rtt_ms === null || r.rtt_ms === undefined ? '' : ` <span class="rtt">${esc(r.rtt_ms)} ms</span>`}</li>`
      )
      .join('');
    const extra = near.length > 8 ? `<p>and ${near.length - 8} more nearby</p>` : '';
    tip.innerHTML =
      `<button type="button" class="tip-close" aria-label="Close">\u00d7</button>` +
      `<p class="tip-title">${near.length === 1 ? '1 relay' : `${near.length} relays`} here</p><ul>${list}</ul>${extra}`;
    tip.hidden = false;
    const box = section.getBoundingClientRect();
    const x = e.clientX - box.left;
    const y = e.clientY - box.top;
    const tw = tip.offsetWidth;
    tip.style.left = `${Math.max(4, Math.min(x + 12, box.width - tw - 4))}px`;
    tip.style.top = `${y + 12}px`;
    const first = tip.querySelector('a');
    if (first) first.focus({ preventScroll: true });
  });
  tip.addEventListener('click', (e) => {
    if (e.target.closest('.tip-close')) closeTip();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !tip.hidden) closeTip();
  });
  document.addEventListener('click', (e) => {
    if (!tip.hidden && !section.contains(e.target)) closeTip();
  });

  performance.mark('brotr-ready');
  document.body.dataset.ready = '1';
}

function init() {
  const section = document.getElementById('map');
  if (section && section.dataset.src) {
    initIndex(section).catch((e) => {
      console.error(e);
      fail(section, `The map could not be drawn (${e.message}). The table below still works.`);
    });
  } else {
    // Other pages (e.g. /relay) are fully server-rendered.
    performance.mark('brotr-ready');
    document.body.dataset.ready = '1';
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init, { once: true });
else init();
