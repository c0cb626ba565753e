// Opens profiles in headless Chromium and checks what the page shows;
// run by tests/test_viewers.sh, which installs what it needs.
//
//   node tests/test_viewers.mjs JOB...   with JOB one of
//     svg FILE.svg FILE.folded        the built-in flame graph ('-': stdin)
//     speedscope RELEASE_DIR FILE.folded   speedscope's release on a file
//     png FILE.svg OUT.png            a picture of an SVG, for the README
//     trace RELEASE_DIR FILE.trace.json    speedscope on a DIAGNOSE_TRACE file
//     trace-png RELEASE_DIR FILE.trace.json OUT.png   its timeline, for the README
//     pprof RELEASE_DIR FILE.pb.gz FILE.busy.folded   speedscope on a DIAGNOSE_PPROF file
//     page URL                        the page of a program serving DIAGNOSE_HTTP
//     page-png URL OUT.png            a picture of that page, for docs/http.md
//
// The jobs share one browser and run at once; each prints its [   OK ] /
// [ FAIL ] lines in order. playwright-core is loaded from $VIEWERS_NODE
// (the npm prefix, default build/node).
import { createRequire } from 'module';
import fs from 'fs';
import http from 'http';
import path from 'path';

const nodeDir = path.resolve(process.env.VIEWERS_NODE || 'build/node');
const require = createRequire(path.join(nodeDir, 'package.json'));
const { chromium } = require('playwright-core');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// A job's results: t.failed counts failed checks, t.out holds its lines.
function check(t, ok, what) {
  if (!ok) {
    t.failed++;
    t.out.push(`  check failed: ${what}`);
  }
  return ok;
}
function report(t, name, before) {
  t.out.push(t.failed === before ? `[   OK ] ${name}` : `[ FAIL ] ${name}`);
  if (t.failed !== before) t.anyFailed = true;
}

// ---- what a folded file says ----

function readFolded(file) {
  return fs.readFileSync(file === '-' ? 0 : file, 'utf8').split('\n').filter(Boolean).map((line) => {
    const at = line.lastIndexOf(' ');
    return { stack: line.slice(0, at), frames: line.slice(0, at).split(';'), value: Number(line.slice(at + 1)) };
  });
}

// Inclusive value of every stack prefix: what a flame graph draws.
function inclusive(lines) {
  const sums = new Map();
  for (const l of lines)
    for (let i = 1; i <= l.frames.length; i++) {
      const key = l.frames.slice(0, i).join(';');
      sums.set(key, (sums.get(key) || 0) + l.value);
    }
  return sums;
}

// Per frame name: total (lines with the name anywhere, once per line) and
// self (lines ending in it), as speedscope's sandwich view counts them.
function perName(lines) {
  const names = new Map();
  for (const l of lines) {
    for (const name of new Set(l.frames)) {
      const n = names.get(name) || { total: 0, self: 0 };
      n.total += l.value;
      names.set(name, n);
    }
    names.get(l.frames[l.frames.length - 1]).self += l.value;
  }
  return names;
}

// ---- the built-in SVG ----

// The frames as the page lays them out: name, exact value, level, the
// rendered box in px, its title, whether it is shown.
function framesOnPage(page) {
  return page.evaluate(() =>
    [...document.getElementsByClassName('f')].map((g) => {
      // the rect fills the frame's box; the box's own bounds include the
      // overflowing (clipped) label
      const box = g.getElementsByTagName('rect')[0].getBoundingClientRect();
      return {
        name: g.getElementsByTagName('text')[0].textContent,
        title: g.getElementsByTagName('title')[0].textContent,
        x: +g.getAttribute('data-x'), v: +g.getAttribute('data-v'), d: +g.getAttribute('data-d'),
        left: box.left, width: box.width, top: box.top, height: box.height,
        shown: getComputedStyle(g).display !== 'none', opacity: getComputedStyle(g).opacity,
      };
    }));
}

// Each frame's stack, from the frame one level down that contains it.
function withStacks(frames) {
  const sorted = [...frames].sort((a, b) => a.d - b.d);
  for (const f of sorted) {
    const parent = sorted.find((p) => p.d === f.d - 1 && p.x <= f.x && p.x + p.v >= f.x + f.v);
    f.stack = parent ? `${parent.stack};${f.name}` : f.name;
  }
  return frames;
}

// "580ms" / "1.56ms" / "12 polls" back to a number, for a tolerance check.
function parseValue(text) {
  const m = /^([\d.]+)(ns|us|ms|s| polls?)$/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * { ns: 1, us: 1e3, ms: 1e6, s: 1e9 }[m[2]] || Number(m[1]);
}

async function testSvg(t, browser, svgFile, foldedFile) {
  const lines = readFolded(foldedFile);
  const want = inclusive(lines);
  const total = lines.reduce((s, l) => s + l.value, 0);
  const label = path.basename(svgFile);
  const page = await browser.newPage({ viewport: { width: 1200, height: 600 } });
  await page.goto('file://' + path.resolve(svgFile));
  let before = t.failed;
  const root = await page.evaluate(() => [document.documentElement.localName,
    document.getElementsByTagName('parsererror').length, document.getElementById('heading').textContent]);
  check(t, root[0] === 'svg' && root[1] === 0, `${label} parses as SVG: ${root}`);
  check(t, /^diagnose\.h: .+, total .+$/.test(root[2]), `heading "${root[2]}"`);
  const frames = withStacks(await framesOnPage(page));
  const scale = 1180 / total;
  const drawn = [...want].filter(([, v]) => v * scale >= 0.1);
  check(t, frames.length === drawn.length, `${label}: ${frames.length} frames on the page, ${drawn.length} stacks of 0.1 px or more in the folded file`);
  const narrow = want.size - drawn.length;
  const leftOut = await page.evaluate(() => document.getElementById('left-out').textContent);
  check(t, leftOut === `${narrow} frame${narrow === 1 ? '' : 's'} narrower than 0.1 px not drawn`,
    `${label}: the page says "${leftOut}", the folded file has ${narrow} stacks under 0.1 px`);
  for (const [stack, v] of drawn) {
    const f = frames.find((g) => g.stack === stack);
    if (!check(t, f, `${label}: frame ${stack} is on the page`)) continue;
    check(t, f.v === v, `${label}: ${stack} value ${f.v} == ${v}, the sum of the lines beneath it`);
    check(t, Math.abs(f.width - v * scale) < 0.02, `${label}: ${stack} is ${f.width} px wide, want ${v * scale}`);
    check(t, Math.abs(f.left - (10 + (f.x * scale))) < 0.02, `${label}: ${stack} starts at ${f.left} px`);
    const share = ((100 * v) / total).toFixed(2);
    const m = /^(.+): (.+) \((\d+\.\d\d)%\)$/.exec(f.title);
    if (!check(t, m, `${label}: title "${f.title}" reads "name: value (share%)"`)) continue;
    check(t, m[1] === f.name && m[3] === share, `${label}: title "${f.title}" has name ${f.name} and share ${share}%`);
    check(t, Math.abs(parseValue(m[2]) - v) <= v * 0.005 + 0.5, `${label}: title value ${m[2]} is ${v}`);
  }
  report(t, `${label}: every frame drawn as wide as the lines beneath it, with its title`, before);

  // Hover: the line at the bottom shows the frame's name, value and share.
  before = t.failed;
  const target = [...frames].sort((a, b) => b.v - a.v).find((f) => f.d > 0) || frames[0];
  await page.mouse.move(target.left + target.width / 2, target.top + target.height / 2);
  const details = await page.evaluate(() => document.getElementById('details').textContent);
  check(t, details === target.title, `hover over ${target.stack} shows "${details}", want "${target.title}"`);
  await page.mouse.move(5, 5);
  const idle = await page.evaluate(() => document.getElementById('details').textContent);
  check(t, idle.startsWith('Hover a frame'), `leaving the frames shows "${idle}"`);
  report(t, `${label}: hover shows name, value and share`, before);

  // Click zooms: into the widest inner frame, and into the widest root
  // that has frames above it.
  const roots = frames.filter((r) => r.d === 0 && frames.some((f) => f.d === 1 && f.x >= r.x && f.x < r.x + r.v));
  for (const z of new Set([target, roots.sort((a, b) => b.v - a.v)[0]]))
    if (z) await checkZoom(t, page, frames, z, label);
  await page.close();
}

// A click on z fills the width with it, scales its subtree with it, spans
// its ancestors across the width, faded, and hides the rest; "Reset zoom"
// puts every frame back.
async function checkZoom(t, page, frames, z, label) {
  const before = t.failed;
  await page.mouse.click(z.left + z.width / 2, z.top + z.height / 2);
  let now = withStacks(await framesOnPage(page));
  for (const f of now) {
    const inside = f.x >= z.x && f.x + f.v <= z.x + z.v && f.d >= z.d;
    const ancestor = f.d < z.d && f.x <= z.x && f.x + f.v >= z.x + z.v;
    if (inside) {
      const w = (f.v * 1180) / z.v, left = 10 + ((f.x - z.x) * 1180) / z.v;
      check(t, f.shown && Math.abs(f.width - w) < 0.02 && Math.abs(f.left - left) < 0.02,
        `zoomed: ${f.stack} at ${f.left} px, ${f.width} px wide, want ${left}, ${w}`);
    } else if (ancestor) {
      check(t, f.shown && Math.abs(f.width - 1180) < 0.02 && f.opacity === '0.5', `zoomed: ancestor ${f.stack} spans the width, faded`);
    } else {
      check(t, !f.shown, `zoomed: ${f.stack} is hidden`);
    }
  }
  const resetShown = await page.evaluate(() => getComputedStyle(document.getElementById('reset')).opacity);
  check(t, resetShown === '1', `"Reset zoom" shows after a zoom (opacity ${resetShown})`);
  const reset = await page.evaluate(() => {
    const r = document.getElementById('reset').getBoundingClientRect();
    return [r.left + r.width / 2, r.top + r.height / 2];
  });
  await page.mouse.click(reset[0], reset[1]);
  now = withStacks(await framesOnPage(page));
  for (const f of now) {
    const first = frames.find((g) => g.stack === f.stack);
    check(t, f.shown && f.opacity === '1' && Math.abs(f.width - first.width) < 0.02 && Math.abs(f.left - first.left) < 0.02,
      `after reset ${f.stack} is back at ${first.left} px, ${first.width} px wide`);
  }
  report(t, `${label}: click zooms into ${z.stack}, Reset zoom restores`, before);
}

// ---- speedscope ----

// Serves speedscope's release and the profiles from one local origin, as
// speedscope loads #profileURL only over http.
function serve(releaseDir, profileDir) {
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
    const file = p.startsWith('/profile/')
      ? path.join(profileDir, path.basename(p))
      : path.join(releaseDir, path.normalize(p === '/' ? '/index.html' : p));
    fs.readFile(file, (err, data) => {
      res.writeHead(err ? 404 : 200);
      res.end(err ? '' : data);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// The page's text once speedscope's sandwich table is drawn whole: its
// header comes a frame before its rows, which come in as the list is laid
// out, so the text must hold `want` rows (matches of re) and read the same
// at two polls in a row. After 20 s, what there is (the checks then say).
async function tableText(page, re, want) {
  await page.waitForFunction(([source, flags, n]) => {
    const text = document.body.innerText;
    const whole = /Symbol Name/.test(text) && (text.match(new RegExp(source, flags)) || []).length >= n;
    const same = whole && window.diagnoseLastText === text;
    window.diagnoseLastText = whole ? text : undefined;
    return same;
  }, [re.source, re.flags, want], { timeout: 20000, polling: 100 }).catch(() => {});
  return page.evaluate(() => document.body.innerText);
}

// The rows of speedscope's sandwich table: total, self, name; want: how many there should be.
async function sandwichRows(page, want) {
  // "1,371,993,788 (77%)  932 (<0.01%)  main"; a share above 99% and
  // below 100% reads ">99%"
  const re = /([\d,]+) \(([<>]?[\d.]+)%\)\s+([\d,]+) \(([<>]?[\d.]+)%\)\s+(\S+)/g;
  const text = await tableText(page, re, want);
  const rows = new Map();
  for (let m; (m = re.exec(text));)
    rows.set(m[5], { total: Number(m[1].replace(/,/g, '')), totalShare: m[2],
      self: Number(m[3].replace(/,/g, '')), selfShare: m[4] });
  return rows;
}

async function testSpeedscope(t, browser, releaseDir, file) {
  const server = await serve(releaseDir, path.dirname(path.resolve(file)));
  const port = server.address().port;
  try {
    const before = t.failed;
    const name = path.basename(file);
    const lines = readFolded(file);
    const total = lines.reduce((s, l) => s + l.value, 0);
    const want = perName(lines);
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${port}/index.html#profileURL=/profile/${encodeURIComponent(name)}&view=sandwich`);
    const rows = await sandwichRows(page, want.size);
    check(t, rows.size === want.size, `${name}: speedscope lists ${rows.size} frames, the file has ${want.size}: ${[...rows.keys()]}`);
    for (const [frame, w] of want) {
      const r = rows.get(frame);
      if (!check(t, r, `${name}: speedscope lists ${frame}`)) continue;
      check(t, r.total === w.total && r.self === w.self,
        `${name}: ${frame} total ${r.total} self ${r.self}, file says total ${w.total} self ${w.self}`);
      // speedscope rounds shares to two significant digits
      const share = (100 * w.total) / total;
      const shown = r.totalShare.startsWith('<') ? share < Number(r.totalShare.slice(1))
        : r.totalShare.startsWith('>') ? share > Number(r.totalShare.slice(1)) && share < 100
        : Math.abs(Number(r.totalShare) - share) <= Math.max(0.05 * share, 0.005);
      check(t, shown, `${name}: ${frame} share ${r.totalShare}% ~ ${share.toFixed(3)}%`);
    }
    const title = await page.title();
    check(t, title === `${name} - speedscope`, `page title "${title}"`);
    check(t, errors.length === 0, `no page errors: ${errors}`);
    await page.close();
    report(t, `speedscope shows ${name}: every frame with the file's total and self`, before);
  } finally {
    server.close();
  }
}

// ---- speedscope on a trace file (DIAGNOSE_TRACE) ----

// speedscope's key of a frame: the name, and the JSON of args if any
// (diagnose.h writes none).
const frameKey = (e) => (e.args ? `${e.name} ${JSON.stringify(e.args)}` : e.name);

// The X events of a file by thread, each with its exact start and end in
// ns and its parent: the shortest event around it (the file's own integer
// nesting; of two with the same span, the one written later).
function tracePolls(file) {
  const byTid = new Map();
  JSON.parse(fs.readFileSync(file, 'utf8')).traceEvents.forEach((e, order) => {
    if (e.ph !== 'X') return;
    const start = Math.round(e.ts * 1000), end = start + Math.round(e.dur * 1000);
    (byTid.get(e.tid) || byTid.set(e.tid, []).get(e.tid)).push({ e, key: frameKey(e), start, end, order });
  });
  for (const polls of byTid.values()) {
    const stack = [];
    for (const p of [...polls].sort((x, y) => x.start - y.start || y.end - x.end || y.order - x.order)) {
      while (stack.length && stack[stack.length - 1].end < p.end) stack.pop();
      p.parent = stack[stack.length - 1];
      stack.push(p);
    }
  }
  return byTid;
}

// What the file says per thread: its name, and per frame (speedscope's
// key) the time it is on the stack (total: not again inside itself) and the
// time it is on top (self), in ns, from the X events' exact microseconds.
function readTrace(file) {
  const threads = new Map();
  for (const [tid, polls] of tracePolls(file)) threads.set(tid, { name: '', polls, frames: new Map() });
  for (const e of JSON.parse(fs.readFileSync(file, 'utf8')).traceEvents)
    if (e.ph === 'M' && e.name === 'thread_name' && threads.has(e.tid)) threads.get(e.tid).name = e.args.name;
  for (const th of threads.values()) {
    for (const p of th.polls) th.frames.set(p.key, { total: 0, self: 0 });
    for (const p of th.polls) {
      const f = th.frames.get(p.key);
      let inside = false;
      for (let a = p.parent; a; a = a.parent) inside ||= a.key === p.key;
      if (!inside) f.total += p.end - p.start;
      f.self += p.end - p.start;
      if (p.parent) th.frames.get(p.parent.key).self -= p.end - p.start;
    }
  }
  return threads;
}

// The polls whose nesting speedscope reads otherwise than the file's own
// integer nanoseconds, per thread. speedscope 1.25 (import/trace-event.ts)
// takes an X event as B at ts - (the thread's first ts) and E at that plus
// dur, in doubles; sorts them by start, the longer first, else in file
// order; and at equal times ends a frame before it begins another, unless
// both are the same frame. Exact decimals do not survive that: an end at a
// parent's very end, or at the next poll's start, can land a rounding step
// after it. This is where the two part.
function misnested(file) {
  const out = [];
  for (const [tid, events] of tracePolls(file)) {
    const min = events.reduce((m, p) => Math.min(m, p.e.ts), Infinity);
    const polls = events.map((p) => ({ p, b: p.e.ts - min, end: p.e.ts - min + p.e.dur }))
      .sort((x, y) => x.b - y.b || y.p.e.dur - x.p.e.dur);
    const stack = [];
    for (const q of polls) {
      for (let top; (top = stack[stack.length - 1]) && (top.end < q.b || (top.end === q.b && top.p.key !== q.p.key));) stack.pop();
      const top = stack[stack.length - 1];
      if ((top && top.p) !== q.p.parent || (top && q.end > top.end))
        out.push(`tid ${tid}: ${JSON.stringify(q.p.e)} inside ${top ? JSON.stringify(top.p.e) : 'nothing'}`);
      stack.push(q);
    }
  }
  return out;
}

// "1.01s" / "33.67ms" / "500.00µs" in ns, and half a unit of its last digit.
function parseTime(text) {
  const m = /^([\d.]+)(ns|µs|ms|s)$/.exec(text);
  if (!m) return null;
  const unit = { ns: 1, 'µs': 1e3, ms: 1e6, s: 1e9 }[m[2]];
  const decimals = (m[1].split('.')[1] || '').length;
  return { ns: Number(m[1]) * unit, half: (0.5 * unit) / 10 ** decimals };
}

async function testTrace(t, browser, releaseDir, file) {
  const server = await serve(releaseDir, path.dirname(path.resolve(file)));
  const port = server.address().port;
  try {
    const before = t.failed;
    const name = path.basename(file);
    const threads = readTrace(file);
    check(t, threads.size >= 1, `${name}: has threads`);
    const wrong = misnested(file);
    check(t, wrong.length === 0, `${name}: ${wrong.length} poll(s) nest otherwise in speedscope's arithmetic than their paths say, e.g. ${wrong.slice(0, 3).join('; ')}`);
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors = [], warnings = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // speedscope's import says so when the events do not nest
    page.on('console', (m) => /Tried to end|still open at end/.test(m.text()) && warnings.push(m.text()));
    await page.goto(`http://127.0.0.1:${port}/index.html#profileURL=/profile/${encodeURIComponent(name)}&view=sandwich`);
    // speedscope opens the first thread; its name comes from the M event
    const [tid, th] = [...threads].sort((a, b) => a[0] - b[0])[0];
    // "1.01s (96%)  1.01s (96%)  concat"; shares may read "<0.01%" or ">99%"
    const re = /([\d.]+(?:ns|µs|ms|s)) \([<>\d.]+%\)\s+([\d.]+(?:ns|µs|ms|s)) \([<>\d.]+%\)\s+(.+)/g;
    const text = await tableText(page, re, th.frames.size);
    check(t, text.includes(`${th.name} (tid ${tid})`), `${name}: the profile is named "${th.name} (tid ${tid})"`);
    const rows = new Map();
    for (let m; (m = re.exec(text));) rows.set(m[3].trim(), { total: parseTime(m[1]), self: parseTime(m[2]) });
    check(t, rows.size === th.frames.size, `${name}: speedscope lists ${rows.size} frames, the file has ${th.frames.size}: ${[...rows.keys()]}`);
    for (const [key, want] of th.frames) {
      const r = rows.get(key);
      if (!check(t, r, `${name}: speedscope lists ${key}`)) continue;
      // as exact as speedscope prints them (3 or 4 digits); +1 ns per poll
      // for speedscope's float sums of microseconds
      const slack = th.polls.length * 1e-3;
      check(t, Math.abs(r.total.ns - want.total) <= r.total.half + slack,
        `${name}: ${key} total ${r.total.ns} ns shown, file says ${want.total} ns`);
      check(t, Math.abs(r.self.ns - want.self) <= r.self.half + slack,
        `${name}: ${key} self ${r.self.ns} ns shown, file says ${want.self} ns`);
    }
    check(t, errors.length === 0, `no page errors: ${errors}`);
    check(t, warnings.length === 0, `${name}: speedscope's import warns ${warnings.length} time(s): ${warnings.slice(0, 3).join('; ')}`);
    await page.close();
    report(t, `speedscope shows ${name}: every frame of thread ${tid} with the file's total and self time`, before);
  } finally {
    server.close();
  }
}

// The timeline of a trace file in speedscope's "Time Order" view.
async function tracePng(t, browser, releaseDir, file, out) {
  const server = await serve(releaseDir, path.dirname(path.resolve(file)));
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 200 } });
    await page.goto(`http://127.0.0.1:${server.address().port}/index.html#profileURL=/profile/${encodeURIComponent(path.basename(file))}&view=time-ordered`);
    await page.waitForFunction(() => /Time Order/.test(document.body.innerText), null, { timeout: 20000 });
    await page.waitForTimeout(1000); // the flame chart draws on the next frames
    await page.screenshot({ path: out });
    await page.close();
    t.out.push(`wrote ${out}`);
  } finally {
    server.close();
  }
}

// ---- speedscope on a pprof profile (DIAGNOSE_PPROF) ----

// speedscope opens PREFIX.pb.gz on its default sample type, busy: every
// frame with the busy.folded file's total and self time, as exact as
// speedscope prints them.
async function testPprof(t, browser, releaseDir, file, foldedFile) {
  const server = await serve(releaseDir, path.dirname(path.resolve(file)));
  try {
    const before = t.failed;
    const name = path.basename(file);
    const want = perName(readFolded(foldedFile));
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`http://127.0.0.1:${server.address().port}/index.html#profileURL=/profile/${encodeURIComponent(name)}&view=sandwich`);
    await page.waitForFunction(() => /Symbol Name/.test(document.body.innerText), null, { timeout: 20000 });
    const text = await page.evaluate(() => document.body.innerText);
    const rows = new Map();
    const re = /([\d.]+(?:ns|µs|ms|s)) \([<>\d.]+%\)\s+([\d.]+(?:ns|µs|ms|s)) \([<>\d.]+%\)\s+(\S+)/g;
    for (let m; (m = re.exec(text));) rows.set(m[3], { total: parseTime(m[1]), self: parseTime(m[2]) });
    check(t, rows.size === want.size, `${name}: speedscope lists ${rows.size} frames, busy.folded has ${want.size}: ${[...rows.keys()]}`);
    for (const [frame, w] of want) {
      const r = rows.get(frame);
      if (!check(t, r, `${name}: speedscope lists ${frame}`)) continue;
      check(t, Math.abs(r.total.ns - w.total) <= r.total.half && Math.abs(r.self.ns - w.self) <= r.self.half,
        `${name}: ${frame} total ${r.total.ns} self ${r.self.ns} ns shown, busy.folded says ${w.total}, ${w.self}`);
    }
    check(t, errors.length === 0, `no page errors: ${errors}`);
    await page.close();
    report(t, `speedscope opens ${name}: busy time, every frame as busy.folded has it`, before);
  } finally {
    server.close();
  }
}

// ---- the page of DIAGNOSE_HTTP ----

// A page of the live program that fails every request to anywhere else.
async function livePage(browser, url, external, errors) {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const origin = new URL(url).origin;
  await page.route('**/*', (route) => {
    if (route.request().url().startsWith(origin)) return route.continue();
    external.push(route.request().url());
    return route.abort();
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  return page;
}

const headingTotal = (page) => page.evaluate(() => {
  const h = document.getElementById('heading');
  return h ? h.textContent : '';
});

// The program serving (tests/test_viewers.sh's live.c) polls on all the
// time and has one stuck run. Its page: the stuck run in the pending view;
// a flame graph that hovers and zooms, that redraws with new numbers when
// the page reloads itself, and whose metric the links choose; nothing
// asked of any other server. (That the table is in the HTML as served,
// test_viewers.sh checks with curl: this process's event loop can be busy
// for longer than the server waits for a request.)
async function testPage(t, browser, url) {
  const before = t.failed;
  const external = [], errors = [];
  // the page reloads itself every second: what each load got, as served
  const page = await livePage(browser, url, external, errors);
  const loads = [];
  page.on('response', (r) => r.request().resourceType() === 'document' && loads.push(r.text().catch(() => '')));
  await page.goto(url + '?refresh=1&metric=polls');
  for (const until = Date.now() + 15000; loads.length < 3 && Date.now() < until;) await page.waitForTimeout(100);
  const totals = [];
  for (const text of await Promise.all(loads)) {
    const m = /diagnose\.h: polls, total (\d+) polls<\/text>/.exec(text);
    if (m && /<g class="f"/.test(text)) totals.push(Number(m[1]));
  }
  check(t, totals.length >= 3 && totals.every((v, i) => i === 0 || v > totals[i - 1]),
    `the page reloads itself, each time with a flame graph of more polls: ${totals}`);
  await page.close();
  const still = await livePage(browser, url, external, errors);
  await still.goto(url + '?refresh=0');
  await still.waitForSelector('#flame g.f');
  const stuck = await still.evaluate(() => [...document.querySelectorAll('#pending .stuck')].map((e) => e.textContent));
  check(t, stuck.some((s) => /^live\.stuck: 1 open, oldest \S+, stuck$/.test(s)), `the pending view lists the stuck run: ${stuck}`);
  // hover and click-to-zoom inside the page, and the metric links
  const frames = withStacks(await framesOnPage(still));
  const target = frames.filter((f) => f.d > 0).sort((a, b) => b.v - a.v)[0];
  check(t, target && /^diagnose\.h: busy time, total /.test(await headingTotal(still)), 'busy time is the default metric');
  if (target) {
    await still.mouse.move(target.left + target.width / 2, target.top + target.height / 2);
    const details = await still.evaluate(() => document.getElementById('details').textContent);
    check(t, details === target.title, `hover over ${target.stack} shows "${details}"`);
    await still.mouse.click(target.left + target.width / 2, target.top + target.height / 2);
    const zoomed = withStacks(await framesOnPage(still)).find((f) => f.stack === target.stack);
    const reset = await still.evaluate(() => getComputedStyle(document.getElementById('reset')).opacity);
    check(t, zoomed && zoomed.width > target.width + 1 && reset === '1',
      `a click zooms into ${target.stack}: ${target.width} px wide, then ${zoomed && zoomed.width} px; Reset zoom shows`);
  }
  await still.click('nav#metrics a:text("wall time")');
  await still.waitForSelector('#flame g.f');
  check(t, /metric=wall/.test(still.url()) && /^diagnose\.h: wall time, total /.test(await headingTotal(still)),
    `the link "wall time" shows the wall flame graph (${still.url()})`);
  await still.close();
  check(t, external.length === 0, `no request leaves the program's server: ${external}`);
  check(t, errors.length === 0, `no page errors: ${errors}`);
  report(t, `the page of DIAGNOSE_HTTP: the stuck run, a flame graph that reloads, zooms and switches metric`, before);
}

// A picture of the page, for docs/http.md.
async function pagePng(t, browser, url, out) {
  const page = await livePage(browser, url, [], []);
  await page.setViewportSize({ width: 1240, height: 760 });
  await page.goto(url + '?refresh=0');
  await page.waitForSelector('#flame g.f');
  await page.screenshot({ path: out, fullPage: true });
  await page.close();
  t.out.push(`wrote ${out}`);
}

// ---- a picture, for the README ----

async function png(t, browser, svgFile, out) {
  const page = await browser.newPage({ viewport: { width: 1200, height: 400 } });
  await page.goto('file://' + path.resolve(svgFile));
  await page.locator('svg').first().screenshot({ path: out });
  await page.close();
  t.out.push(`wrote ${out}`);
}

const arity = { svg: 2, speedscope: 2, png: 2, trace: 2, 'trace-png': 3, pprof: 3, page: 1, 'page-png': 2 };
const run = { svg: testSvg, speedscope: testSpeedscope, png, trace: testTrace, 'trace-png': tracePng, pprof: testPprof,
  page: testPage, 'page-png': pagePng };
const jobs = [];
for (let argv = process.argv.slice(2); argv.length;) {
  const mode = argv.shift();
  if (!(mode in run)) {
    console.log(`[ FAIL ] viewers: unknown job ${mode}`);
    process.exit(1);
  }
  jobs.push({ mode, args: argv.splice(0, arity[mode]), failed: 0, out: [], anyFailed: false });
}
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
await Promise.all(jobs.map(async (t) => {
  try {
    await run[t.mode](t, browser, ...t.args);
  } catch (e) {
    t.out.push(`[ FAIL ] ${t.mode} ${t.args.join(' ')}: ${e.message.split('\n')[0]}`);
    t.anyFailed = true;
  }
}));
await browser.close();
for (const t of jobs) for (const line of t.out) console.log(line);
process.exit(jobs.some((t) => t.anyFailed) ? 1 : 0);
