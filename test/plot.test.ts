// SVG line charts (train/plot.ts) and terminal charts (train/termchart.ts): well-formed output,
// the requested content and size, ticks, gaps and clipping.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { clipSegment, escapeXml, lineChart, logTicks, niceTicks } from '../train/plot.ts';
import { termChart } from '../train/termchart.ts';
import { rangeTestPlot, rangeTestTermChart } from '../rangetest/plot.ts';
import { suggestLr } from '../rangetest/suggest.ts';
import { syntheticCurve } from '../rangetest/synthetic.ts';

const RUNS = { numRuns: 60, seed: Number(process.env.FC_SEED ?? 20240601) };

/**
 * Minimal XML well-formedness check: every '<' opens a syntactically valid tag (quoted attributes,
 * no duplicates), tags nest and balance under one root, and every '&' starts a known entity.
 */
function assertWellFormedXml(xml: string): void {
  assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(xml), 'bare & outside an entity');
  const tag = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"<]*")*)\s*(\/?)>/y;
  const stack: string[] = [];
  let roots = 0;
  for (let i = xml.indexOf('<'); i !== -1; i = xml.indexOf('<', i + 1)) {
    tag.lastIndex = i;
    const m = tag.exec(xml);
    assert.ok(m, `malformed tag at ${i}: ${xml.slice(i, i + 60)}`);
    const [, close, name, attrs, selfClose] = m;
    const names = [...attrs!.matchAll(/([A-Za-z_:][\w:.-]*)=/g)].map((a) => a[1]);
    assert.equal(new Set(names).size, names.length, `duplicate attribute in <${name}>`);
    if (close) {
      assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    } else {
      if (stack.length === 0) roots++;
      if (!selfClose) stack.push(name!);
    }
  }
  assert.equal(stack.length, 0, `unclosed: ${stack.join(', ')}`);
  assert.equal(roots, 1, 'one root element');
  assert.ok(xml.trimStart().startsWith('<svg'), 'root is <svg>');
}

/** y pixel coordinates of every vertex in the path of a series. */
function pathYs(svg: string, series: string): number[] {
  const m = new RegExp(`<path data-series="${series}" d="([^"]*)"`).exec(svg);
  assert.ok(m, `no path for ${series}`);
  return [...m[1]!.matchAll(/[ML]([-\d.]+),([-\d.]+)/g)].map((p) => Number(p[2]));
}

const xs = Array.from({ length: 50 }, (_, i) => i);

describe('lineChart', () => {
  test('well-formed SVG with every series, its legend entry, markers and escaped labels', () => {
    const svg = lineChart({
      title: 'loss < 1 & "fast" \'runs\'',
      xLabel: 'step',
      yLabel: 'loss',
      series: [
        { name: 'train', xs, ys: xs.map((x) => 2 / (1 + x)) },
        { name: 'valid <b>', xs, ys: xs.map((x) => 2.2 / (1 + x)), dashed: true, color: '#ff0000' },
      ],
      markers: [{ x: 10, label: 'warm-up & peak' }],
    });
    assertWellFormedXml(svg);
    assert.match(svg, /<title>loss &lt; 1 &amp; &quot;fast&quot; &apos;runs&apos;<\/title>/);
    assert.match(svg, /<path data-series="train" d="M[^"]+"/);
    assert.match(svg, /<path data-series="valid &lt;b&gt;" d="M[^"]+"[^>]*stroke-dasharray/);
    assert.match(svg, />valid &lt;b&gt;<\/text>/);
    assert.match(svg, /data-marker="warm-up &amp; peak"/);
    assert.ok(!/NaN|Infinity/.test(svg), 'no NaN / Infinity in coordinates');
  });

  test('NaN and Infinity leave gaps; values <= 0 are gaps on a log axis; an isolated point is a dot', () => {
    const ys = xs.map((x) => (x === 20 || x === 22 ? Number.NaN : x === 35 ? Number.POSITIVE_INFINITY : 1 + x));
    const svg = lineChart({ series: [{ name: 's', xs, ys }] });
    assertWellFormedXml(svg);
    const d = /data-series="s" d="([^"]*)"/.exec(svg)![1]!;
    assert.equal(d.match(/M/g)!.length, 3, `three runs: ${d.slice(0, 80)}`); // 0-19, 23-34, 36-49 (21 alone)
    assert.match(svg, /<circle data-series="s"/);
    const logSvg = lineChart({ logY: true, series: [{ name: 'p', xs, ys: xs.map((x) => (x === 25 ? 0 : x + 1)) }] });
    assertWellFormedXml(logSvg);
    assert.equal(/data-series="p" d="([^"]*)"/.exec(logSvg)![1]!.match(/M/g)!.length, 2);
  });

  test('log x axis: decade ticks; linear y axis: 1-2-5 ticks', () => {
    const lrs = Array.from({ length: 61 }, (_, i) => 10 ** (-6 + i / 10));
    const svg = lineChart({ logX: true, series: [{ name: 'l', xs: lrs, ys: lrs.map((_, i) => 0.1 * i) }] });
    const labels = [...svg.matchAll(/text-anchor="middle">([^<]+)<\/text>/g)].map((m) => m[1]);
    assert.deepEqual(labels, ['1e-6', '1e-5', '1e-4', '0.001', '0.01', '0.1', '1']);
    const yLabels = [...svg.matchAll(/text-anchor="end">([^<]+)<\/text>/g)].map((m) => Number(m[1]));
    assert.deepEqual(yLabels, [0, 1, 2, 3, 4, 5, 6]);
  });

  test('yClip and yMaxQuantile keep a blow-up from flattening the curve; clipped lines stay inside the plot', () => {
    const ys = xs.map((x) => (x < 45 ? 1 + Math.sin(x / 5) : 10 ** (x - 40)));
    for (const opts of [{ yClip: [0, 2.5] as const }, { yMaxQuantile: 0.9 }]) {
      const svg = lineChart({ height: 300, series: [{ name: 's', xs, ys }], ...opts });
      assertWellFormedXml(svg);
      const rect = /<rect x="([\d.]+)" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="none"/.exec(svg)!;
      const [top, bottom] = [Number(rect[2]), Number(rect[2]) + Number(rect[3])];
      for (const y of pathYs(svg, 's')) assert.ok(y >= top - 0.01 && y <= bottom + 0.01, `y ${y} outside [${top}, ${bottom}]`);
      // The sine (range 2) spans most of the plot height rather than a sliver.
      const sine = pathYs(svg, 's').slice(0, 40);
      assert.ok(Math.max(...sine) - Math.min(...sine) > 0.5 * (bottom - top));
    }
  });

  test('rejects mismatched series and bad ranges', () => {
    assert.throws(() => lineChart({ series: [{ name: 'a', xs: [1, 2], ys: [1] }] }), /series 0 \('a'\) has 2 xs but 1 ys/);
    assert.throws(() => lineChart({ series: [], yClip: [1, 1] }), /yClip/);
    assert.throws(() => lineChart({ series: [], logY: true, yClip: [0, 1] }), /lo > 0/);
    assert.throws(() => lineChart({ series: [], width: 50 }), /at least 160 x 120/);
  });

  test('an empty chart is still a well-formed SVG', () => {
    assertWellFormedXml(lineChart({ series: [] }));
    assertWellFormedXml(lineChart({ series: [{ name: 'nan', xs: [1, 2], ys: [Number.NaN, Number.NaN] }], logX: true }));
  });
});

describe('ticks and clipping', () => {
  test('niceTicks: evenly spaced 1-2-5 steps inside the range, about the requested count', () => {
    fc.assert(
      fc.property(fc.double({ min: -1e6, max: 1e6, noNaN: true }), fc.double({ min: -8, max: 6, noNaN: true }), (lo, logSpan) => {
        const hi = lo + 10 ** logSpan;
        fc.pre(hi > lo);
        const t = niceTicks(lo, hi);
        assert.ok(t.length >= 2 && t.length <= 13, `${t.length} ticks`);
        const step = t[1]! - t[0]!;
        const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
        assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6), `step ${step}`);
        for (let i = 0; i < t.length; i++) {
          assert.ok(t[i]! >= lo - step * 1e-6 && t[i]! <= hi + step * 1e-6);
          if (i > 0) assert.ok(Math.abs(t[i]! - t[i - 1]! - step) <= step * 1e-6);
        }
      }),
      RUNS,
    );
  });

  test('logTicks: powers of ten across two or more decades, 1-2-5 inside one', () => {
    assert.deepEqual(logTicks(3e-7, 20), [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10]);
    assert.deepEqual(logTicks(1e-12, 1), [1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1]);
    assert.deepEqual(logTicks(0.15, 0.9), [0.2, 0.5]);
    assert.deepEqual(logTicks(0.012, 0.5), [0.02, 0.05, 0.1, 0.2, 0.5]);
  });

  test('clipSegment (Liang–Barsky)', () => {
    const box = { x0: 0, y0: 0, x1: 1, y1: 1 };
    assert.deepEqual(clipSegment([0.5, 0.5], [0.5, 3], box), [[0.5, 0.5], [0.5, 1]]);
    assert.deepEqual(clipSegment([-1, 0.5], [2, 0.5], box), [[0, 0.5], [1, 0.5]]);
    assert.equal(clipSegment([2, 2], [3, 3], box), null);
    assert.deepEqual(clipSegment([0.2, 0.2], [0.4, 0.6], box), [[0.2, 0.2], [0.4, 0.6]]);
  });

  test('escapeXml replaces markup characters and characters XML forbids', () => {
    assert.equal(escapeXml(`<a href="x">'&'</a>\u0001`), '&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;\ufffd');
  });
});

describe('rangeTestPlot', () => {
  const curve = syntheticCurve({
    steps: 120,
    startExp: -6,
    endExp: 1,
    plateau: 2.3,
    floor: 0.4,
    descentCentre: -3,
    descentWidth: 0.3,
    blowupStart: -1,
    blowupWidth: 0.15,
    noise: 0.02,
    seed: 3,
  });
  for (const method of ['auto', 'valley'] as const) {
    test(`${method}: raw and smoothed loss, max / min lr and divergence marked, reason in <desc>`, () => {
      const s = suggestLr(curve, { method });
      const svg = rangeTestPlot(curve, s);
      assertWellFormedXml(svg);
      assert.match(svg, /<path data-series="loss \(raw\)"/);
      assert.match(svg, new RegExp(`<path data-series="loss \\(smoothed, ${method}\\)"`));
      assert.match(svg, /data-marker="max lr [\d.e-]+"/);
      assert.match(svg, /data-marker="min lr [\d.e-]+"/);
      assert.match(svg, /data-marker="diverges [\d.e-]+"/);
      assert.match(svg, /<desc>[^<]*diverges/);
      assert.ok(!/NaN|Infinity/.test(svg.replace(/<desc>[^<]*<\/desc>/, '')));
    });
  }
});

describe('termChart', () => {
  const lrs = Array.from({ length: 80 }, (_, i) => 10 ** (-6 + i / 13));
  const losses = lrs.map((lr) => 1 + Math.tanh(-Math.log10(lr) - 3) + (lr > 0.5 ? 10 * lr : 0));

  test('exactly width x height characters in every mode', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 24, max: 140 }),
        fc.integer({ min: 6, max: 40 }),
        fc.constantFrom('braille', 'block', 'ascii' as const),
        fc.boolean(),
        (width, height, mode, titled) => {
          const out = termChart(
            { xs: lrs, ys: losses },
            { width, height, mode, logX: true, markers: [{ x: 1e-3 }], ...(titled ? { title: 'a title that may be too long to fit in a narrow chart' } : {}) },
          );
          const lines = out.split('\n');
          assert.equal(lines.length, height);
          for (const line of lines) assert.equal([...line].length, width, `line '${line}'`);
          if (mode === 'ascii') assert.ok(/^[\x20-\x7e\n…]*$/.test(out), 'ascii mode is plain ASCII (title ellipsis aside)');
        },
      ),
      RUNS,
    );
  });

  test('braille mode draws with braille cells; a rising line goes from bottom left to top right', () => {
    const out = termChart({ xs: [0, 1], ys: [0, 1] }, { width: 30, height: 8, mode: 'ascii' });
    const rows = out.split('\n').slice(0, 6);
    const plotCols = rows.map((r) => r.slice(r.search(/[|+]/) + 1));
    assert.equal(plotCols[0]!.trimEnd().at(-1), '*', 'top row ends with the line');
    assert.equal(plotCols[5]![0], '*', 'bottom row starts with the line');
    const braille = termChart({ xs: [0, 1], ys: [0, 1] }, { width: 30, height: 8 });
    assert.ok(/[\u2801-\u28ff]/.test(braille));
  });

  test('markers are columns and ticks on the axis; NaN leaves a gap without failing', () => {
    const out = termChart(
      { xs: [1, 2, 3, 4, 5], ys: [1, Number.NaN, 3, Number.POSITIVE_INFINITY, 5] },
      { width: 40, height: 8, mode: 'ascii', markers: [{ x: 3 }] },
    );
    const lines = out.split('\n');
    assert.ok(lines[lines.length - 2]!.includes('^'));
    assert.ok(lines.slice(0, 6).some((l) => l.includes(':')));
    const empty = termChart({ xs: [1, 2], ys: [Number.NaN, Number.NaN] }, { width: 30, height: 6 });
    assert.equal(empty.split('\n').length, 6);
  });

  test('rangeTestTermChart: 60 x 12 by default, lr decades on the x axis', () => {
    const curve = { lrs, losses };
    const out = rangeTestTermChart(curve, suggestLr(curve));
    const lines = out.split('\n');
    assert.equal(lines.length, 12);
    for (const line of lines) assert.equal([...line].length, 60);
    assert.match(lines[0]!, /^loss vs lr: max [\d.e-]+, min/);
    assert.match(lines[11]!, /1e-6.*0\.001/);
    assert.equal((lines[10]!.match(/┴/g) ?? []).length >= 2, true, 'max and min lr marked on the axis');
  });

  test('rejects sizes too small to draw', () => {
    assert.throws(() => termChart({ xs: [1], ys: [1] }, { width: 10 }), /at least 24 x 6/);
    assert.throws(() => termChart({ xs: [1, 2], ys: [1] }), /1 ys/);
  });
});
