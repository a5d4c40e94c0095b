// The layers import one way: cli → run → (train, rangetest, data, models) → engine →
// kernels → gpu, with schedules/ a leaf anyone may use. This reads every import of the
// project's sources and fails on one that goes up a layer, and on a circle between
// files. What is still crooked is listed in KNOWN (each a piece of issue 16 that is
// left); the list must shrink: a KNOWN entry that no longer occurs fails too.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Rank of each top-level folder: a file may import only from lower ranks or its own folder. */
const RANK: Record<string, number> = {
  schedules: 0,
  gpu: 1,
  kernels: 2,
  engine: 3,
  models: 4,
  data: 4,
  train: 4,
  rangetest: 4,
  run: 5,
  cli: 6,
  bench: 7,
};

/** Import edges still against the rule, and file circles still there (issue 16). */
const KNOWN = new Set<string>([
  // empty since this session: every import runs one way (add an entry only with the issue that removes it)
]);

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every relative import (static, type-only and re-exports included) of a file, as repository paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"](\.[^'"]+)['"]/gm)) {
    out.push(relative(ROOT, normalize(join(dirname(file), m[1]!))));
  }
  return out;
}

const top = (path: string): string => path.split('/')[0]!;

/** Tarjan's strongly connected components of an import graph. */
function stronglyConnected(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      out.push(scc);
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

it('imports run one way between the layers, and no two files import each other in a circle', () => {
  const files = Object.keys(RANK).flatMap((d) => {
    try {
      return sources(join(ROOT, d));
    } catch {
      return []; // a layer not made yet (run/)
    }
  });
  const graph = new Map(files.map((f) => [relative(ROOT, f), importsOf(f)]));
  const found = new Set<string>();
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const a = top(from);
      const b = top(to);
      if (a === b || !(b in RANK)) continue;
      if (RANK[b]! > RANK[a]!) found.add(`up: ${a}/ → ${to}`);
      // peers of one layer may use each other one way, not both
      else if (RANK[b] === RANK[a] && [...graph].some(([f, ts]) => top(f) === b && ts.some((t) => top(t) === a))) {
        found.add(`circle: ${[a, b].sort().join('/ ⇄ ')}/`);
      }
    }
  }
  // circles between files: every strongly connected set of more than one file (tensor ⇄ autograd is the one allowed)
  for (const scc of stronglyConnected(graph)) {
    const names = scc.sort();
    if (names.length > 1 && names.join(' ') !== 'engine/autograd.ts engine/tensor.ts') found.add(`circle: ${names.join(' ⇄ ')}`);
  }
  const unexpected = [...found].filter((v) => !KNOWN.has(v)).sort();
  const gone = [...KNOWN].filter((v) => !found.has(v)).sort();
  assert.deepEqual(unexpected, [], `imports against the layering:\n  ${unexpected.join('\n  ')}`);
  assert.deepEqual(gone, [], `fixed, so remove from KNOWN in test/layers.test.ts:\n  ${gone.join('\n  ')}`);
});

it('kernels/ know nothing of tensors or autograd, and gpu/ imports nothing of the project', () => {
  for (const f of sources(join(ROOT, 'kernels'))) {
    for (const to of importsOf(f)) assert.ok(top(to) === 'kernels' || top(to) === 'gpu', `${relative(ROOT, f)} imports ${to}`);
  }
  for (const f of sources(join(ROOT, 'gpu'))) {
    for (const to of importsOf(f)) assert.ok(top(to) === 'gpu', `${relative(ROOT, f)} imports ${to}`);
  }
});
