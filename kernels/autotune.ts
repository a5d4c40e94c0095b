// The kernel autotuner: times the candidate kernels of a matmul or of each part of a
// convolution (forward, grad input, grad weight) on this adapter, per shape class
// (kernels/matmul.ts's shapeClass, conv2dLarge.ts's convShapeClass), and keeps the
// fastest in the device policy (matmul.tuning, conv.tuning: the planners read them)
// and in a cache file per adapter label, `.cache/kernel-tuning.json`, so later
// processes on the same adapter start with it. Replaces the matmul-only
// `bench --tune` table (.cache/matmul-tuning.json).
//
// Candidates: matmul on a software adapter the direct, tiled and texture kernels; on
// a GPU the 64×64 tiled kernel and the large-tile family. Conv parts: the planner's
// kernel without large tiles (null: the 64-wide buffer kernels on a GPU, the
// texture/row kernels on lavapipe) and each large tile.
//
// The cache is written atomically (a temporary file renamed over it) and read
// strictly: a file that is not JSON or not this schema is refused with its path and
// why, never silently replaced.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Device } from '../gpu/device.ts';
import type { GemmTile, MatmulConfig } from '../gpu/policy.ts';
import { conv2dForward, conv2dGradInput, conv2dGradWeight, gradWeightSplits } from './conv2d.ts';
import { convShapeClass } from './conv2dLarge.ts';
import type { ConvGeometry, ConvTiles } from './convGeometry.ts';
import { planConv } from './convPlan.ts';
import { LARGE_TILES, tileName, tileProblem } from './gemmLarge.ts';
import { TUNE_CANDIDATES, configName, matmulKernel, shapeClass } from './matmul.ts';
import type { MatmulOptions } from './matmulOptions.ts';
import type { Operand } from './operand.ts';
import { isSoftwareAdapter } from './common.ts';

/** What a tuning found, per shape class: a matmul kernel; a conv part's large tile, or null for the planner's other kernel. */
export interface TuningTables {
  matmul: Map<string, MatmulConfig>;
  conv: Map<string, GemmTile | null>;
}

interface CacheFile {
  version: 1;
  /** per adapter label */
  adapters: Record<string, { matmul: Record<string, MatmulConfig>; conv: Record<string, GemmTile | null> }>;
}

export class TuningCacheError extends Error {}

const refuse = (path: string, why: string): TuningCacheError =>
  new TuningCacheError(`kernel tuning cache ${path}: ${why} (delete the file to tune again)`);

function checkTile(path: string, where: string, t: unknown): GemmTile {
  const o = t as Record<string, unknown>;
  if (typeof t !== 'object' || t === null || !['bm', 'bn', 'bk', 'tm', 'tn'].every((k) => Number.isInteger(o[k]) && (o[k] as number) > 0) || typeof o.double !== 'boolean') {
    throw refuse(path, `${where} is not a tile {bm, bn, bk, tm, tn, double}: ${JSON.stringify(t)}`);
  }
  const tile = t as GemmTile;
  const problem = tileProblem(tile);
  if (problem) throw refuse(path, `${where}: ${problem}`);
  return tile;
}

function checkMatmulConfig(path: string, where: string, c: unknown): MatmulConfig {
  const o = c as Record<string, unknown>;
  if (typeof c !== 'object' || c === null) throw refuse(path, `${where} is not a kernel: ${JSON.stringify(c)}`);
  if (o.kind === 'tiled' || o.kind === 'texture') return c as MatmulConfig;
  if (o.kind === 'direct' && ['tm', 'tn', 'wx', 'wy'].every((k) => Number.isInteger(o[k]) && (o[k] as number) > 0)) return c as MatmulConfig;
  if (o.kind === 'large') return { kind: 'large', tile: checkTile(path, `${where}.tile`, o.tile) };
  throw refuse(path, `${where} is not a matmul kernel (tiled, direct, texture or large): ${JSON.stringify(c)}`);
}

/** The whole cache file, checked; null when there is none. */
function readCache(path: string): CacheFile | null {
  if (!existsSync(path)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw refuse(path, `not JSON (${(e as Error).message})`);
  }
  const f = raw as Partial<CacheFile>;
  if (typeof raw !== 'object' || raw === null || f.version !== 1) throw refuse(path, `not a version-1 tuning cache (version ${JSON.stringify(f?.version)})`);
  if (typeof f.adapters !== 'object' || f.adapters === null) throw refuse(path, 'no "adapters" table');
  for (const [label, a] of Object.entries(f.adapters)) {
    if (typeof a !== 'object' || a === null || typeof a.matmul !== 'object' || typeof a.conv !== 'object' || !a.matmul || !a.conv) {
      throw refuse(path, `adapter '${label}' has no matmul and conv tables`);
    }
    for (const [k, c] of Object.entries(a.matmul)) a.matmul[k] = checkMatmulConfig(path, `adapters['${label}'].matmul['${k}']`, c);
    for (const [k, t] of Object.entries(a.conv)) a.conv[k] = t === null ? null : checkTile(path, `adapters['${label}'].conv['${k}']`, t);
  }
  return f as CacheFile;
}

/** This adapter's tables in the cache at `path`; null when the file or the adapter's entry is missing. Throws TuningCacheError on a corrupt file. */
export function readTuning(path: string, label: string): TuningTables | null {
  const mine = readCache(path)?.adapters[label];
  if (!mine) return null;
  return { matmul: new Map(Object.entries(mine.matmul)), conv: new Map(Object.entries(mine.conv)) };
}

/** Merges this adapter's tables into the cache at `path`: written to a temporary file, then renamed over it. */
export function writeTuning(path: string, label: string, t: TuningTables): void {
  const all: CacheFile = readCache(path) ?? { version: 1, adapters: {} };
  const prev = all.adapters[label] ?? { matmul: {}, conv: {} };
  all.adapters[label] = { matmul: { ...prev.matmul, ...Object.fromEntries(t.matmul) }, conv: { ...prev.conv, ...Object.fromEntries(t.conv) } };
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(all, null, 1)}\n`);
  renameSync(tmp, path);
}

/** The device's policy with these tables added to the ones in force. */
export function applyTuning(device: Device, t: TuningTables): void {
  const p = device.policy;
  device.policy = {
    ...p,
    matmul: { ...p.matmul, tuning: new Map([...(p.matmul.tuning ?? []), ...t.matmul]) },
    conv: { ...p.conv, tuning: new Map([...(p.conv.tuning ?? []), ...t.conv]) },
  };
}

/** Reads this adapter's tables from the policy's cache file into its policy; returns them (null: none cached). */
export function loadTuning(device: Device): TuningTables | null {
  const t = readTuning(device.policy.tuningFile, device.label);
  if (t) applyTuning(device, t);
  return t;
}

/** Whether the policy has the session tune its model's kernels: 'auto' = on GPUs, not on software adapters. */
export function autotuneEnabled(device: Pick<Device, 'policy' | 'isSoftwareAdapter' | 'hasSubgroups' | 'subgroupSize' | 'limits'>): boolean {
  const a = device.policy.autotune;
  return a === 'on' || (a === 'auto' && !isSoftwareAdapter(device));
}

// ------------------------------------------------------------------ timing

export interface TuneOptions {
  /** timed part per candidate (after an untimed first run that compiles it) */
  budgetMs?: number;
  /** write the results to the policy's cache file (default true) */
  write?: boolean;
}

export interface TuneResult<C> {
  shape: string;
  /** ms per run of each candidate: the fastest repetition (other processes only ever slow one down) */
  times: { config: C; name: string; ms: number }[];
  best: C;
}

async function fastest(device: Device, run: () => void, budgetMs: number): Promise<number> {
  run();
  await device.sync();
  let best = Infinity;
  const start = performance.now();
  for (let rep = 0; rep < 20 && (rep < 2 || performance.now() - start < budgetMs); rep++) {
    const t0 = performance.now();
    run();
    await device.sync();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

type Make = (shape: number[]) => Operand & { dispose(): void };
type MatmulShape = Pick<MatmulOptions, 'transA' | 'transB' | 'M' | 'N' | 'K'>;

/** The matmul kernels worth timing on this adapter. */
export function matmulCandidates(device: Pick<Device, 'isSoftwareAdapter' | 'hasSubgroups' | 'subgroupSize' | 'limits' | 'policy'>): MatmulConfig[] {
  if (isSoftwareAdapter(device)) return TUNE_CANDIDATES;
  return [{ kind: 'tiled' }, ...LARGE_TILES.map((tile) => ({ kind: 'large' as const, tile }))];
}

/** Times each candidate on each matmul shape; the fastest per shape class goes into the policy (and the cache). */
export async function tuneMatmul(device: Device, shapes: MatmulShape[], make: Make, o: TuneOptions & { candidates?: MatmulConfig[] } = {}): Promise<TuneResult<MatmulConfig>[]> {
  const results: TuneResult<MatmulConfig>[] = [];
  const policy = device.policy;
  try {
    for (const s of shapes) {
      const a = make(s.transA ? [s.K, s.M] : [s.M, s.K]);
      const b = make(s.transB ? [s.N, s.K] : [s.K, s.N]);
      const c = make([s.M, s.N]);
      const opts: MatmulOptions = { ...s, batchA: 1, batchB: 1, batch: 1 };
      const times: TuneResult<MatmulConfig>['times'] = [];
      for (const config of o.candidates ?? matmulCandidates(device)) {
        device.policy = { ...policy, matmul: { ...policy.matmul, force: config } };
        times.push({ config, name: configName(config), ms: await fastest(device, () => matmulKernel(device, a, b, c, opts), o.budgetMs ?? 300) });
      }
      [a, b, c].forEach((t) => t.dispose());
      const best = times.reduce((x, y) => (y.ms < x.ms ? y : x)).config;
      results.push({ shape: shapeClass(s), times, best });
    }
  } finally {
    device.policy = policy;
  }
  const t: TuningTables = { matmul: new Map(results.map((r) => [r.shape, r.best])), conv: new Map() };
  applyTuning(device, t);
  if (o.write ?? true) writeTuning(device.policy.tuningFile, device.label, t);
  return results;
}

const PARTS: (keyof ConvTiles)[] = ['forward', 'gradInput', 'gradWeight'];

/**
 * Times each conv part of each geometry on each candidate (null: the planner's
 * kernel without large tiles; a tile: the large kernels with it); the fastest per
 * part's shape class goes into the policy (and the cache).
 */
export async function tuneConv(device: Device, geoms: ConvGeometry[], make: Make, o: TuneOptions & { candidates?: (GemmTile | null)[] } = {}): Promise<TuneResult<GemmTile | null>[]> {
  const results: TuneResult<GemmTile | null>[] = [];
  const policy = device.policy;
  const candidates = o.candidates ?? [null, ...LARGE_TILES];
  try {
    for (const g of geoms) {
      const x = make([g.batch, g.cin, g.h, g.w]);
      const w = make([g.cout, g.cin, g.kh, g.kw]);
      const y = make([g.batch, g.cout, g.ho, g.wo]);
      const dy = make([g.batch, g.cout, g.ho, g.wo]);
      const dx = make([g.batch, g.cin, g.h, g.w]);
      const dw = make([g.cout, g.cin, g.kh, g.kw]);
      const times = new Map<keyof ConvTiles, TuneResult<GemmTile | null>['times']>(PARTS.map((p) => [p, []]));
      for (const t of candidates) {
        // null: the planner as on this adapter, told the large tiles do not pay for this geometry
        const none = new Map(PARTS.map((p) => [convShapeClass(p, g), null]));
        device.policy = t
          ? { ...policy, conv: { ...policy.conv, path: 'large', tile: t } }
          : { ...policy, conv: { ...policy.conv, path: policy.conv.path === 'large' ? 'auto' : policy.conv.path, tuning: none } };
        const plan = planConv(device, g);
        const splits = gradWeightSplits(g, device).splits;
        const scratch = splits > 1 ? make([splits * w.size]) : undefined;
        const name = t ? `large ${tileName(t)}` : `${plan.forward}/${plan.gradInput}/${plan.gradWeight}`;
        const budget = o.budgetMs ?? 300;
        times.get('forward')!.push({ config: t, name, ms: await fastest(device, () => void conv2dForward(device, x, w, undefined, y, g, plan), budget) });
        times.get('gradInput')!.push({ config: t, name, ms: await fastest(device, () => conv2dGradInput(device, dy, w, dx, g, plan), budget) });
        times.get('gradWeight')!.push({ config: t, name, ms: await fastest(device, () => conv2dGradWeight(device, dy, x, dw, g, plan, scratch), budget) });
        scratch?.dispose();
      }
      [x, w, y, dy, dx, dw].forEach((b) => b.dispose());
      for (const p of PARTS) {
        const ts = times.get(p)!;
        results.push({ shape: convShapeClass(p, g), times: ts, best: ts.reduce((a, b) => (b.ms < a.ms ? b : a)).config });
      }
    }
  } finally {
    device.policy = policy;
  }
  const t: TuningTables = { matmul: new Map(), conv: new Map(results.map((r) => [r.shape, r.best])) };
  applyTuning(device, t);
  if (o.write ?? true) writeTuning(device.policy.tuningFile, device.label, t);
  return results;
}
