// Matmul kernel sweep for a real GPU (written for the H200 run; --local for lavapipe).
//
//   node --import tsx bench/gpu/matmul-sweep.ts [--local] [--json out.json]
//        [--sizes 4096,2048] [--budget-s 90] [--only name,name] [--reps 7]
//        [--force-sgmat 16,16,16]   (testing: the subgroup-matrix path without the feature)
//
// On the H200 (2026-12-04, Dawn in webgpu 0.6.2, driver 580.159): ~21 s in all; FMA peak
// f32 61.8, vec4<f16> 64.7 TFLOP/s; at 4096³ tiled64 21.3, tiled128x128-8x8 33.6, f16
// operands with f16 FMAs per K slice 40.6, subgroup-matrix-f16-16x16x16-4x4 73.3 TFLOP/s,
// every variant correct. shader-f16 and the f16 subgroup-matrix configs exist there only
// with the adapter toggle vulkan_enable_f16_on_nvidia (otherwise only u8/i8 configs).
//
// 1. Adapter (high-performance) and device with every feature among timestamp-query,
//    shader-f16, subgroups, chromium-experimental-subgroup-matrix the adapter has and
//    its max limits; Dawn toggle allow_unsafe_apis (subgroup matrices) and
//    timestamp_quantization off, both as dawn.node instance flags. Records the
//    adapter's info, features, limits and subgroupMatrixConfigs.
// 2. fp32 and f16 FMA peaks (matmul-kernels.ts fmaPeak), GFLOP/s.
// 3. Matmul variants (matmul-kernels.ts): correctness against a float64 CPU reference
//    on an odd shape (output poisoned with NaN first), then timing at each size
//    (median of the timed repetitions after warm-up; GPU timestamps where available,
//    else wall clock around submit + onSubmittedWorkDone).
// 4. A table and the JSON (--json; rewritten after every step, so a crash keeps what ran).
// Every step is isolated: errors (compile messages included) are recorded, never fatal;
// a lost or hung device is replaced for the next step; --budget-s bounds the wall time.
import { writeFileSync } from 'node:fs';
import { create, globals } from 'webgpu';
import {
  type KernelSource,
  PEAK_CHAINS,
  PEAK_UNROLL,
  fmaPeak,
  fromHalf,
  subgroupMatrix,
  tiled64Scalar,
  tiledVec4,
  toHalf,
} from './matmul-kernels.ts';

Object.assign(globalThis, globals);

// ------------------------------------------------------------------ arguments
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const opt = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const LOCAL = flag('--local');
const JSON_OUT = opt('--json');
const SIZES = (opt('--sizes') ?? (LOCAL ? '256,512' : '4096,2048')).split(',').map((s) => parseInt(s, 10)).filter((n) => n > 0);
const BUDGET_S = parseFloat(opt('--budget-s') ?? '90');
const ONLY = opt('--only')?.split(',') ?? null;
/** testing only: pretend the adapter lists this f16→f32 config (M,N,K), so the subgroup-matrix path runs (and fails, recorded) without the feature */
const FORCE_SGMAT = opt('--force-sgmat')?.split(',').map(Number) ?? null;
const REPS = Math.max(5, parseInt(opt('--reps') ?? (LOCAL ? '5' : '7'), 10));
const CHECK = LOCAL ? { M: 100, N: 76, K: 68 } : { M: 200, N: 136, K: 152 };
const CHECK_ALIGNED = { M: 256, N: 256, K: 256 };
/** per GPU wait; a hung kernel costs this much, then the device is replaced */
const WAIT_MS = LOCAL ? 300_000 : 30_000;
/** aim for each timed measurement to last at least this long */
const TARGET_MS = LOCAL ? 20 : 3;

const t0 = performance.now();
const elapsedS = () => (performance.now() - t0) / 1000;
const overBudget = () => elapsedS() > BUDGET_S;

// ------------------------------------------------------------------ results
interface Row {
  variant: string;
  size: number;
  ms: number | null;
  gflops: number | null;
  pctPeak: number | null;
  peakKind: string;
  correct: string;
  timer?: string;
  inner?: number;
  samplesMs?: number[];
  warmMs?: number;
  note?: string;
  error?: string;
}
const out: {
  started: string;
  argv: string[];
  local: boolean;
  sizes: number[];
  budgetS: number;
  dawnFlags?: string[];
  adapter?: Record<string, unknown>;
  device?: Record<string, unknown>;
  peaks: Record<string, unknown>;
  variants: Record<string, Record<string, unknown>>;
  rows: Row[];
  notes: string[];
  errors: string[];
  finished?: string;
  elapsedS?: number;
} = { started: new Date().toISOString(), argv, local: LOCAL, sizes: SIZES, budgetS: BUDGET_S, peaks: {}, variants: {}, rows: [], notes: [], errors: [] };

function save() {
  if (!JSON_OUT) return;
  try {
    out.elapsedS = elapsedS();
    writeFileSync(JSON_OUT, JSON.stringify(out, null, 1));
  } catch (e) {
    console.error(`could not write ${JSON_OUT}: ${msg(e)}`);
  }
}
const msg = (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : String(e));
const log = (s: string) => console.log(`[${elapsedS().toFixed(1)}s] ${s}`);
function note(s: string) {
  out.notes.push(s);
  log(`note: ${s}`);
}
function error(where: string, e: unknown) {
  const m = `${where}: ${msg(e)}`;
  out.errors.push(m);
  log(`ERROR ${m}`);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => {
      hung = true;
      rej(new Error(`${what}: no answer after ${ms / 1000} s (device treated as hung)`));
    }, ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// ------------------------------------------------------------------ device
const WANT_FEATURES = ['timestamp-query', 'shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'];
const WANT_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
];
// dawn.node crashes if the object create() returned is collected while devices live
let gpuInstance: GPU | null = null;
let gpuInstanceOld: GPU[] = []; // instances of replaced devices stay referenced too
let adapter: GPUAdapter | null = null;
let device: GPUDevice | null = null;
let lost = false;
let hung = false;
let hasTs = false;
let hasF16 = false;
let hasSgMatrix = false;
let subgroupMaxSize = 0;
const uncaptured: string[] = [];
/** pipelines of the current device by variant name */
const compiled = new Map<string, { src: KernelSource; c: Compiled }>();
interface SgConfig {
  M: number;
  N: number;
  K: number;
  componentType: string;
  resultComponentType: string;
}
let sgConfigs: SgConfig[] = [];

async function openDevice(first: boolean): Promise<void> {
  // allow_unsafe_apis: subgroup matrices; vulkan_enable_f16_on_nvidia (adapter toggle): without it
  // Dawn hides shader-f16, and with it every f16 subgroup-matrix config, on NVIDIA/Vulkan
  const flagSets = [
    ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia', 'disable-dawn-features=timestamp_quantization'],
    ['enable-dawn-features=allow_unsafe_apis', 'disable-dawn-features=timestamp_quantization'],
    ['disable-dawn-features=timestamp_quantization'],
    [],
  ];
  let lastErr: unknown = null;
  for (const flags of flagSets) {
    try {
      const inst = create(flags);
      const a = await withTimeout(inst.requestAdapter({ powerPreference: 'high-performance' }), 60_000, 'requestAdapter');
      if (!a) throw new Error('requestAdapter returned null');
      if (gpuInstance) gpuInstanceOld.push(gpuInstance);
      gpuInstance = inst;
      adapter = a;
      if (first) out.dawnFlags = flags;
      break;
    } catch (e) {
      lastErr = e;
      if (first) out.notes.push(`create(${JSON.stringify(flags)}) failed: ${msg(e)}`);
    }
  }
  if (!adapter) throw new Error(`no adapter: ${msg(lastErr)}`);
  const a = adapter;
  const feats = WANT_FEATURES.filter((f) => a.features.has(f));
  const limits: Record<string, number> = {};
  for (const k of WANT_LIMITS) {
    const v = (a.limits as unknown as Record<string, number>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  let d: GPUDevice;
  try {
    d = await withTimeout(a.requestDevice({ requiredFeatures: feats as GPUFeatureName[], requiredLimits: limits }), 60_000, 'requestDevice');
  } catch (e) {
    out.notes.push(`requestDevice with ${feats.join(',')} and max limits failed (${msg(e)}); retrying with defaults`);
    const again = await gpuInstance!.requestAdapter({ powerPreference: 'high-performance' });
    if (!again) throw new Error('requestAdapter returned null on retry');
    adapter = again;
    d = await again.requestDevice({ requiredFeatures: WANT_FEATURES.filter((f) => again.features.has(f) && f !== 'chromium-experimental-subgroup-matrix') as GPUFeatureName[] });
  }
  device = d;
  lost = false;
  hung = false;
  d.lost.then((info) => {
    if (device === d) {
      lost = true;
      out.errors.push(`device lost: ${info.reason} ${info.message}`);
      log(`device lost: ${info.reason} ${info.message}`);
    }
  });
  d.addEventListener('uncapturederror', (ev: Event) => {
    const m = (ev as GPUUncapturedErrorEvent).error.message;
    if (uncaptured.length < 50) uncaptured.push(m);
  });
  hasTs = d.features.has('timestamp-query');
  hasF16 = d.features.has('shader-f16');
  hasSgMatrix = d.features.has('chromium-experimental-subgroup-matrix');
  const info = (adapter as GPUAdapter).info as GPUAdapterInfo & Record<string, unknown>;
  subgroupMaxSize = Number(info.subgroupMaxSize ?? 0);
  if (first) {
    const rawCfgs = (info.subgroupMatrixConfigs ?? []) as ArrayLike<Record<string, unknown>>;
    sgConfigs = Array.from(rawCfgs).map((c) => ({
      M: Number(c.M),
      N: Number(c.N),
      K: Number(c.K),
      componentType: String(c.componentType),
      resultComponentType: String(c.resultComponentType),
    }));
    const adapterLimits: Record<string, number> = {};
    for (const k of WANT_LIMITS) adapterLimits[k] = (adapter.limits as unknown as Record<string, number>)[k]!;
    out.adapter = {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      subgroupMinSize: info.subgroupMinSize,
      subgroupMaxSize: info.subgroupMaxSize,
      isFallbackAdapter: info.isFallbackAdapter,
      features: [...adapter.features].sort(),
      limits: adapterLimits,
      subgroupMatrixConfigs: sgConfigs,
    };
    const devLimits: Record<string, number> = {};
    for (const k of WANT_LIMITS) devLimits[k] = (d.limits as unknown as Record<string, number>)[k]!;
    out.device = { features: [...d.features].sort(), limits: devLimits };
  }
}

async function ensureDevice(): Promise<boolean> {
  if (device && !lost && !hung) return true;
  note(`replacing the device (${lost ? 'lost' : hung ? 'hung' : 'none'})`);
  try {
    device?.destroy();
  } catch {
    /* ignore */
  }
  device = null;
  compiled.clear(); // pipelines belonged to the old device
  try {
    await openDevice(false);
    return true;
  } catch (e) {
    error('reopening the device', e);
    return false;
  }
}

/** Runs fn under validation / internal / out-of-memory error scopes; throws their messages. */
async function scoped<T>(what: string, fn: () => Promise<T> | T): Promise<T> {
  const d = device!;
  d.pushErrorScope('out-of-memory');
  d.pushErrorScope('internal');
  d.pushErrorScope('validation');
  let r: T | undefined;
  let thrown: unknown = null;
  try {
    r = await fn();
  } catch (e) {
    thrown = e;
  }
  const errs: string[] = [];
  for (const kind of ['validation', 'internal', 'out-of-memory']) {
    try {
      const e = await withTimeout(d.popErrorScope(), WAIT_MS, `popErrorScope(${kind})`);
      if (e) errs.push(`${kind}: ${e.message}`);
    } catch (e) {
      errs.push(msg(e));
    }
  }
  if (thrown) throw new Error(`${what}: ${msg(thrown)}${errs.length ? ' | ' + errs.join(' | ') : ''}`);
  if (errs.length) throw new Error(`${what}: ${errs.join(' | ')}`);
  return r as T;
}

interface Compiled {
  pipeline: GPUComputePipeline;
  messages: string[];
  compileMs: number;
}
async function compile(label: string, code: string): Promise<Compiled> {
  const d = device!;
  const c0 = performance.now();
  const module = d.createShaderModule({ label, code });
  const messages: string[] = [];
  try {
    const ci = await withTimeout(module.getCompilationInfo(), WAIT_MS, 'getCompilationInfo');
    for (const m of ci.messages) messages.push(`${m.type} ${m.lineNum}:${m.linePos} ${m.message}`);
  } catch (e) {
    messages.push(`getCompilationInfo: ${msg(e)}`);
  }
  if (messages.some((m) => m.startsWith('error'))) throw Object.assign(new Error(`${label}: shader compilation failed:\n${messages.join('\n')}`), { messages });
  let pipeline: GPUComputePipeline;
  try {
    pipeline = await withTimeout(d.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: 'main' } }), WAIT_MS * 4, 'createComputePipelineAsync');
  } catch (e) {
    throw Object.assign(new Error(`${label}: pipeline creation failed: ${msg(e)}${messages.length ? '\n' + messages.join('\n') : ''}`), { messages });
  }
  return { pipeline, messages, compileMs: performance.now() - c0 };
}

// ------------------------------------------------------------------ buffers, timing
const live: GPUBuffer[] = [];
function buffer(size: number, usage: number, label = ''): GPUBuffer {
  const b = device!.createBuffer({ label, size: Math.max(16, Math.ceil(size / 16) * 16), usage });
  live.push(b);
  return b;
}
function freeAll() {
  for (const b of live.splice(0)) {
    try {
      b.destroy();
    } catch {
      /* ignore */
    }
  }
}
const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
function uniform(words: ArrayBufferView): GPUBuffer {
  const b = buffer(Math.max(32, words.byteLength), GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, 'params');
  device!.queue.writeBuffer(b, 0, words.buffer, words.byteOffset, words.byteLength);
  return b;
}
async function readBack(src: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const d = device!;
  const rb = d.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const enc = d.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, rb, 0, Math.ceil(bytes / 4) * 4);
    d.queue.submit([enc.finish()]);
    await withTimeout(rb.mapAsync(GPUMapMode.READ), WAIT_MS, 'readback mapAsync');
    const copy = rb.getMappedRange().slice(0);
    rb.unmap();
    return copy;
  } finally {
    rb.destroy();
  }
}

interface Job {
  pipeline: GPUComputePipeline;
  group: GPUBindGroup;
  grid: [number, number, number];
}
function bind(pipeline: GPUComputePipeline, buffers: GPUBuffer[], grid: [number, number, number]): Job {
  const group = device!.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: buffers.map((b, i) => ({ binding: i, resource: { buffer: b } })) });
  return { pipeline, group, grid };
}

/** One submit of `inner` dispatches in one compute pass; ms for the whole pass (timestamps or wall). */
async function runOnce(job: Job, inner: number): Promise<{ ms: number; timer: string }> {
  const d = device!;
  const enc = d.createCommandEncoder();
  let qs: GPUQuerySet | null = null;
  let resolve: GPUBuffer | null = null;
  let rb: GPUBuffer | null = null;
  const desc: GPUComputePassDescriptor = {};
  if (hasTs) {
    qs = d.createQuerySet({ type: 'timestamp', count: 2 });
    resolve = d.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    rb = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    desc.timestampWrites = { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 };
  }
  const pass = enc.beginComputePass(desc);
  pass.setPipeline(job.pipeline);
  pass.setBindGroup(0, job.group);
  for (let i = 0; i < inner; i++) pass.dispatchWorkgroups(...job.grid);
  pass.end();
  if (qs && resolve && rb) {
    enc.resolveQuerySet(qs, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, rb, 0, 16);
  }
  const w0 = performance.now();
  d.queue.submit([enc.finish()]);
  try {
    await withTimeout(d.queue.onSubmittedWorkDone(), WAIT_MS, 'onSubmittedWorkDone');
    const wall = performance.now() - w0;
    if (rb) {
      await withTimeout(rb.mapAsync(GPUMapMode.READ), WAIT_MS, 'timestamp mapAsync');
      const t = new BigUint64Array(rb.getMappedRange().slice(0));
      rb.unmap();
      const ns = Number(t[1]! - t[0]!);
      if (ns > 0 && Number.isFinite(ns)) return { ms: ns / 1e6, timer: 'timestamp' };
    }
    return { ms: wall, timer: 'wall' };
  } finally {
    qs?.destroy();
    resolve?.destroy();
    rb?.destroy();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
};

/**
 * Warm-up, choose `inner` so a measurement lasts ≥ TARGET_MS, then REPS timed passes; median ms
 * per dispatch. On a GPU the warm-up lasts ≥ WARM_MS of GPU work: the H200 lowers its clocks
 * within a second or two of idling (compiles, CPU-side data), and a first run measured 4096³
 * kernels 1.2-3.8× slow for their first ~100 ms.
 */
const WARM_MS = LOCAL ? 0 : 300;
async function timeJob(job: Job, reps = REPS): Promise<{ ms: number; timer: string; inner: number; samples: number[]; warmMs: number }> {
  const w = await runOnce(job, 1);
  const maxInner = LOCAL ? 4 : 50;
  const inner = Math.max(1, Math.min(maxInner, Math.ceil(TARGET_MS / Math.max(w.ms, 1e-3))));
  let warmMs = w.ms;
  const w0 = performance.now();
  do {
    warmMs += (await runOnce(job, inner)).ms;
  } while (warmMs < WARM_MS && performance.now() - w0 < 4 * WARM_MS + 1000);
  const samples: number[] = [];
  let timer = w.timer;
  for (let r = 0; r < reps; r++) {
    const s = await runOnce(job, inner);
    timer = s.timer;
    samples.push(s.ms / inner);
  }
  return { ms: median(samples), timer, inner, samples, warmMs };
}

// ------------------------------------------------------------------ FMA peaks
const peaks: { f32: number | null; f16: number | null } = { f32: null, f16: null };

async function measurePeak(elem: 'f32' | 'f16'): Promise<void> {
  const rec: Record<string, unknown> = {};
  out.peaks[elem] = rec;
  try {
    if (!(await ensureDevice())) throw new Error('no device');
    if (elem === 'f16' && !hasF16) {
      rec.skipped = 'no shader-f16';
      return;
    }
    const wg = 256;
    const groups = LOCAL ? 16 : 4096; // GPU: 1 M invocations, several waves on 132 SMs
    const inv = wg * groups;
    const c = await scoped(`peak ${elem} compile`, () => compile(`peak-${elem}`, fmaPeak(elem, wg)));
    const outBuf = buffer(inv * 4, STORAGE(), 'peak-out');
    const params = new ArrayBuffer(32);
    const u = new Uint32Array(params);
    const f = new Float32Array(params);
    const setIters = (iters: number) => {
      u[0] = iters;
      f[4] = elem === 'f16' ? 0.99 : 0.9999;
      f[5] = 0.001;
    };
    let iters = LOCAL ? 4 : 16;
    setIters(iters);
    const pbuf = uniform(new Uint8Array(params));
    const job = bind(c.pipeline, [outBuf, pbuf], [groups, 1, 1]);
    const targetMs = LOCAL ? 60 : 4;
    let ms = 0;
    await scoped(`peak ${elem} warm-up`, () => runOnce(job, 1)); // the first run also compiles (lavapipe: LLVM)
    // calibrate iterations so one dispatch lasts about targetMs
    for (let step = 0; step < 6; step++) {
      ms = (await scoped(`peak ${elem} calibrate`, () => runOnce(job, 1))).ms;
      if (ms >= targetMs * 0.7) break;
      iters = Math.min(1 << 20, Math.max(iters * 2, Math.ceil((iters * targetMs) / Math.max(ms, 1e-3))));
      setIters(iters);
      device!.queue.writeBuffer(pbuf, 0, params);
    }
    const t = await timeJob(job, REPS);
    const flops = inv * iters * PEAK_UNROLL * PEAK_CHAINS * 4 * 2;
    const gflops = flops / (t.ms * 1e6);
    const sample = new Float32Array(await readBack(outBuf, 64));
    Object.assign(rec, { gflops, ms: t.ms, timer: t.timer, iters, invocations: inv, samplesMs: t.samples, compileMs: c.compileMs, outSample: sample[0] });
    peaks[elem] = gflops;
    log(`FMA peak ${elem}: ${gflops.toFixed(0)} GFLOP/s (${t.ms.toFixed(3)} ms, ${iters} iterations × ${PEAK_UNROLL * PEAK_CHAINS} vec4 FMAs, ${inv} invocations, ${t.timer})`);
  } catch (e) {
    rec.error = msg(e);
    error(`peak ${elem}`, e);
  } finally {
    freeAll();
    save();
  }
}

// ------------------------------------------------------------------ variants
interface Variant {
  name: string;
  /** storage type of A and B */
  operands: 'f32' | 'f16';
  /** C's storage type */
  result: 'f32' | 'f16';
  peak: 'f32' | 'f16';
  tol: number;
  /** the correctness shape needs multiples of the tile */
  aligned: boolean;
  make(): KernelSource;
  describe: string;
}

function variants(): Variant[] {
  const v: Variant[] = [];
  const f32 = (name: string, describe: string, make: () => KernelSource): Variant => ({ name, operands: 'f32', result: 'f32', peak: 'f32', tol: 1e-4, aligned: false, make, describe });
  v.push(f32('tiled64', '64×64 tile, 16×16 threads, 4×4 per thread, BK 16, scalar loads (engine kernel)', tiled64Scalar));
  v.push(f32('tiled128x128-8x8', '128×128, 16×16 threads, 8×8 per thread, BK 16, vec4 loads, A transposed in wg memory', () => tiledVec4({ BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, doubleBuffer: false, elem: 'f32', halfAcc: false })));
  v.push(f32('tiled128x128-8x8-db', 'as tiled128x128-8x8 with BK 8, double-buffered (register prefetch, 2 stages, 1 barrier per slice)', () => tiledVec4({ BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, doubleBuffer: true, elem: 'f32', halfAcc: false })));
  v.push(f32('tiled128x64-8x4', '128×64, 16×16 threads, 8×4 per thread, BK 16, vec4', () => tiledVec4({ BM: 128, BN: 64, BK: 16, TM: 8, TN: 4, doubleBuffer: false, elem: 'f32', halfAcc: false })));
  v.push(f32('tiled64x64-8x8', '64×64, 8×8 threads, 8×8 per thread, BK 16, vec4', () => tiledVec4({ BM: 64, BN: 64, BK: 16, TM: 8, TN: 8, doubleBuffer: false, elem: 'f32', halfAcc: false })));
  v.push({
    name: 'f16-128x128',
    operands: 'f16',
    result: 'f32',
    peak: 'f16',
    tol: 2e-2,
    aligned: false,
    describe: 'as tiled128x128-8x8, A and B f16 in storage and wg memory, converted to f32, f32 FMA/accumulation',
    make: () => tiledVec4({ BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, doubleBuffer: false, elem: 'f16', halfAcc: false }),
  });
  v.push({
    name: 'f16-128x128-hacc',
    operands: 'f16',
    result: 'f32',
    peak: 'f16',
    tol: 2e-2,
    aligned: false,
    describe: 'as f16-128x128 but vec4<f16> FMAs within each BK=16 slice, added into f32 accumulators after it',
    make: () => tiledVec4({ BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, doubleBuffer: false, elem: 'f16', halfAcc: true }),
  });
  // subgroup matrices: f16 → f32 configs first, f16 → f16 as second choice; at most two configs
  const forced: SgConfig[] = FORCE_SGMAT ? [{ M: FORCE_SGMAT[0]!, N: FORCE_SGMAT[1]!, K: FORCE_SGMAT[2]!, componentType: 'f16', resultComponentType: 'f32' }] : [];
  const f16cfg = [...sgConfigs, ...forced].filter((c) => c.componentType === 'f16');
  const pick = [...f16cfg.filter((c) => c.resultComponentType === 'f32'), ...f16cfg.filter((c) => c.resultComponentType === 'f16')];
  const seen = new Set<string>();
  const chosen = pick.filter((c) => {
    const k = `${c.M}x${c.N}x${c.K}-${c.resultComponentType}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (chosen.length === 0) {
    out.notes.push(
      hasSgMatrix || sgConfigs.length
        ? `subgroup-matrix-f16: no config with componentType f16 among ${JSON.stringify(sgConfigs)}`
        : 'subgroup-matrix-f16: not run (no chromium-experimental-subgroup-matrix feature / no configs on this adapter)',
    );
  } else if (!hasSgMatrix && !FORCE_SGMAT) {
    out.notes.push('subgroup-matrix-f16: the adapter lists configs but the device lacks chromium-experimental-subgroup-matrix');
  } else {
    const sg = Math.max(32, subgroupMaxSize || 32);
    chosen.slice(0, 2).forEach((c, ci) => {
      const result = c.resultComponentType === 'f32' ? 'f32' : 'f16';
      // FM×FN result matrices per subgroup (f32 16×16 accumulators: 8 registers each per lane)
      const tiles: [number, number][] = ci === 0 ? [[4, 4], [8, 2], [4, 2], [2, 2]] : [[4, 4]];
      for (const [FM, FN] of tiles) {
        const base = `subgroup-matrix-f16${result === 'f16' ? '-f16acc' : ''}-${c.M}x${c.N}x${c.K}-${FM}x${FN}`;
        v.push({
          name: base,
          operands: 'f16',
          result,
          peak: 'f16',
          tol: result === 'f16' ? 5e-2 : 2e-2,
          aligned: true,
          describe: `one subgroup (${sg} invocations) per workgroup, ${FM}×${FN} result matrices of ${c.M}×${c.N} (K step ${c.K}), fragments loaded from storage, f16 → ${result}`,
          make: () => {
            // first the current syntax; on a compile error runVariant retries with the older one
            return subgroupMatrix({ M: c.M, N: c.N, K: c.K, result, FM, FN, subgroupSize: sg, syntax: 'template' });
          },
        });
      }
    });
  }
  return v;
}

// data -------------------------------------------------------------
function randF32(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}
function toHalfArray(a: Float32Array): Uint16Array {
  const h = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) h[i] = toHalf(a[i]!);
  return h;
}
const HALF_TABLE = Array.from({ length: 256 }, (_, i) => toHalf((i - 128) / 128));
function randHalfFast(n: number): Uint16Array {
  const h = new Uint16Array(n);
  let s = (Math.random() * 0x7fffffff) | 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    h[i] = HALF_TABLE[s & 255]!;
  }
  return h;
}
function upload(data: Float32Array | Uint16Array, label: string): GPUBuffer {
  const b = buffer(data.byteLength, STORAGE(), label);
  let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (bytes.byteLength % 4) {
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    bytes = padded;
  }
  device!.queue.writeBuffer(b, 0, bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return b;
}
function poison(b: GPUBuffer, elems: number, result: 'f32' | 'f16') {
  if (result === 'f32') device!.queue.writeBuffer(b, 0, new Uint32Array(elems).fill(0x7fc00000));
  else device!.queue.writeBuffer(b, 0, new Uint16Array(Math.ceil(elems / 2) * 2).fill(0x7e00));
}
function reference(A: Float32Array, B: Float32Array, M: number, N: number, K: number): Float64Array {
  const C = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      const a = A[m * K + k]!;
      const row = k * N;
      const o = m * N;
      for (let n = 0; n < N; n++) C[o + n]! += a * B[row + n]!;
    }
  }
  return C;
}

async function compileVariant(v: Variant, rec: Record<string, unknown>): Promise<{ src: KernelSource; c: Compiled }> {
  rec.compileFailed = true;
  const r = await compileVariantInner(v, rec);
  rec.compileFailed = false;
  return r;
}
async function compileVariantInner(v: Variant, rec: Record<string, unknown>): Promise<{ src: KernelSource; c: Compiled }> {
  let src = v.make();
  try {
    const c = await scoped(`${v.name} compile`, () => compile(v.name, src.code));
    rec.compileMs = c.compileMs;
    if (c.messages.length) rec.compileMessages = c.messages;
    return { src, c };
  } catch (e) {
    if (!v.name.startsWith('subgroup-matrix')) throw e;
    // older Dawn: col_major as a bool argument instead of a template parameter
    rec.wgslTemplateSyntax = src.code;
    rec.errorTemplateSyntax = msg(e);
    log(`${v.name}: template syntax failed, trying the bool syntax: ${msg(e).slice(0, 400)}`);
    const m = /subgroup-matrix-f16(-f16acc)?-(\d+)x(\d+)x(\d+)-(\d+)x(\d+)/.exec(v.name)!;
    src = subgroupMatrix({
      M: +m[2]!,
      N: +m[3]!,
      K: +m[4]!,
      result: v.result,
      FM: +m[5]!,
      FN: +m[6]!,
      subgroupSize: Math.max(32, subgroupMaxSize || 32),
      syntax: 'bool',
    });
    if (!(await ensureDevice())) throw new Error('no device');
    const c = await scoped(`${v.name} compile (bool syntax)`, () => compile(v.name, src.code));
    rec.syntax = 'bool';
    rec.compileMs = c.compileMs;
    return { src, c };
  }
}


async function checkVariant(v: Variant): Promise<void> {
  const rec: Record<string, unknown> = { describe: v.describe, operands: v.operands, result: v.result };
  out.variants[v.name] = rec;
  try {
    if (overBudget()) {
      rec.skipped = 'wall budget spent';
      note(`${v.name}: correctness skipped (wall budget of ${BUDGET_S} s spent)`);
      return;
    }
    if (!(await ensureDevice())) throw new Error('no device');
    if (v.operands === 'f16' && !hasF16) {
      rec.skipped = 'no shader-f16';
      return;
    }
    const k = await compileVariant(v, rec);
    if (v.name.startsWith('subgroup-matrix')) rec.wgsl = k.src.code;
    compiled.set(v.name, k);
    const { M, N, K } = v.aligned ? CHECK_ALIGNED : CHECK;
    const why = k.src.unsupported(M, N, K);
    if (why) throw new Error(`correctness shape ${M}×${N}×${K}: ${why}`);
    const A = randF32(M * K);
    const B = randF32(K * N);
    const a = v.operands === 'f16' ? upload(toHalfArray(A), 'A') : upload(A, 'A');
    const b = v.operands === 'f16' ? upload(toHalfArray(B), 'B') : upload(B, 'B');
    const cBytes = M * N * (v.result === 'f16' ? 2 : 4);
    const c = buffer(cBytes, STORAGE(), 'C');
    poison(c, M * N, v.result);
    const p = uniform(new Uint32Array([M, N, K, 0, 0, 0, 0, 0]));
    const [gx, gy] = k.src.grid(M, N);
    const job = bind(k.c.pipeline, [a, b, c, p], [gx, gy, 1]);
    await scoped(`${v.name} run`, () => runOnce(job, 1));
    const raw = await readBack(c, cBytes);
    const got = v.result === 'f16' ? Array.from(new Uint16Array(raw, 0, M * N), fromHalf) : new Float32Array(raw, 0, M * N);
    const ref = reference(A, B, M, N, K);
    let maxRef = 0;
    let maxErr = 0;
    let bad = 0;
    for (let i = 0; i < M * N; i++) {
      const g = got[i]!;
      maxRef = Math.max(maxRef, Math.abs(ref[i]!));
      if (!Number.isFinite(g)) {
        bad++;
        maxErr = Infinity;
      } else maxErr = Math.max(maxErr, Math.abs(g - ref[i]!));
    }
    const rel = maxErr / maxRef;
    const pass = rel <= v.tol && bad === 0;
    Object.assign(rec, { checkShape: [M, N, K], maxAbsErr: maxErr, maxRef, relErr: rel, nonFinite: bad, tol: v.tol, pass });
    log(`${v.name}: check ${M}×${N}×${K}${v.aligned ? ' (tile multiples)' : ''}: max|err|/max|ref| = ${rel.toExponential(2)}${bad ? `, ${bad} non-finite` : ''} → ${pass ? 'pass' : 'FAILED'}`);
  } catch (e) {
    rec.error = msg(e);
    rec.pass = false;
    error(`${v.name} check`, e);
  } finally {
    freeAll();
    save();
  }
}

// timing buffers for one size, shared by the variants
let sizeData: { size: number; a32: Float32Array; b32: Float32Array; a16: Uint16Array | null; b16: Uint16Array | null } | null = null;

async function timeVariant(v: Variant, S: number): Promise<void> {
  const rec = out.variants[v.name] ?? {};
  const row: Row = { variant: v.name, size: S, ms: null, gflops: null, pctPeak: null, peakKind: v.peak, correct: rec.pass === true ? 'pass' : rec.pass === false ? 'FAILED' : '-' };
  out.rows.push(row);
  try {
    if (rec.skipped) {
      row.note = `skipped: ${rec.skipped}`;
      return;
    }
    if (overBudget()) {
      row.note = 'skipped: wall budget spent';
      note(`${v.name} @ ${S}: skipped (wall budget of ${BUDGET_S} s spent)`);
      return;
    }
    if (!(await ensureDevice())) throw new Error('no device');
    if (rec.compileFailed) {
      row.note = 'skipped: did not compile';
      return;
    }
    let k = compiled.get(v.name);
    if (!k) {
      k = await compileVariant(v, {});
      compiled.set(v.name, k);
    }
    const why = k.src.unsupported(S, S, S);
    if (why) throw new Error(why);
    if (!sizeData || sizeData.size !== S) {
      sizeData = { size: S, a32: randF32(S * S), b32: randF32(S * S), a16: null, b16: null };
    }
    if (v.operands === 'f16' && !sizeData.a16) {
      sizeData.a16 = randHalfFast(S * S);
      sizeData.b16 = randHalfFast(S * S);
    }
    const a = upload(v.operands === 'f16' ? sizeData.a16! : sizeData.a32, 'A');
    const b = upload(v.operands === 'f16' ? sizeData.b16! : sizeData.b32, 'B');
    const c = buffer(S * S * (v.result === 'f16' ? 2 : 4), STORAGE(), 'C');
    const p = uniform(new Uint32Array([S, S, S, 0, 0, 0, 0, 0]));
    const [gx, gy] = k.src.grid(S, S);
    const job = bind(k.c.pipeline, [a, b, c, p], [gx, gy, 1]);
    const t = await scoped(`${v.name} @ ${S}`, () => timeJob(job));
    const gflops = (2 * S * S * S) / (t.ms * 1e6);
    const peak = peaks[v.peak];
    Object.assign(row, { ms: t.ms, gflops, pctPeak: peak ? (100 * gflops) / peak : null, timer: t.timer, inner: t.inner, samplesMs: t.samples, warmMs: t.warmMs });
    if (v.name.startsWith('subgroup-matrix')) {
      row.note = `vs f16 FMA peak${peaks.f16 ? ` ${((100 * gflops) / peaks.f16).toFixed(0)}%` : ''}, vs f32 FMA peak${peaks.f32 ? ` ${((100 * gflops) / peaks.f32).toFixed(0)}%` : ''}; the tensor-core peak is far higher (H200 dense f16: ~990 TFLOP/s)`;
    }
    log(`${v.name} @ ${S}: ${t.ms.toFixed(3)} ms, ${gflops.toFixed(0)} GFLOP/s${row.pctPeak !== null ? `, ${row.pctPeak.toFixed(0)}% of ${v.peak} FMA peak` : ''} (${t.timer}, ${t.inner}/measurement)`);
  } catch (e) {
    row.error = msg(e);
    error(`${v.name} @ ${S}`, e);
  } finally {
    freeAll();
    save();
  }
}

function table() {
  const head = ['variant', 'size', 'ms', 'GFLOP/s', '% peak', 'correct'];
  const rows = out.rows.map((r) => [
    r.variant,
    String(r.size),
    r.ms !== null ? r.ms.toFixed(3) : '-',
    r.gflops !== null ? r.gflops.toFixed(0) : '-',
    r.pctPeak !== null ? `${r.pctPeak.toFixed(0)}% ${r.peakKind}` : '-',
    r.correct + (r.error ? ` (error: ${r.error.split('\n')[0]!.slice(0, 90)})` : r.note?.startsWith('skipped') ? ` (${r.note})` : ''),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (i < 5 ? r[i]!.length : 0))));
  const fmt = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : i < 5 ? c.padStart(w[i]!) : c)).join('  ');
  console.log('\n' + fmt(head));
  for (const r of rows) console.log(fmt(r));
  console.log(`FMA peak: f32 ${peaks.f32 ? peaks.f32.toFixed(0) : '-'} GFLOP/s, f16 ${peaks.f16 ? peaks.f16.toFixed(0) : '-'} GFLOP/s`);
  for (const n of out.notes) console.log(`note: ${n}`);
}

// ------------------------------------------------------------------ main
async function main() {
  // a hard stop well past the budget, so an unattended run always ends with its JSON
  const watchdog = setTimeout(
    () => {
      out.errors.push(`watchdog: stopped after ${elapsedS().toFixed(0)} s`);
      save();
      table();
      process.exit(3);
    },
    (BUDGET_S * 2 + (LOCAL ? 600 : 120)) * 1000,
  );
  try {
    await openDevice(true);
    const ad = out.adapter!;
    log(`adapter: ${ad.vendor} ${ad.architecture} ${ad.description} (subgroups ${ad.subgroupMinSize}-${ad.subgroupMaxSize}); flags ${JSON.stringify(out.dawnFlags)}`);
    log(`device features: ${(out.device!.features as string[]).join(', ')}`);
    log(`subgroup matrix configs: ${JSON.stringify(sgConfigs)}`);
    save();
    await measurePeak('f32');
    await measurePeak('f16');
    const vs = variants().filter((v) => !ONLY || ONLY.some((o) => v.name.startsWith(o)));
    log(`variants: ${vs.map((v) => v.name).join(', ')}`);
    for (const v of vs) await checkVariant(v);
    for (const S of SIZES) {
      for (const v of vs) await timeVariant(v, S);
      sizeData = null;
    }
  } catch (e) {
    error('main', e);
  }
  clearTimeout(watchdog);
  if (uncaptured.length) out.notes.push(`uncaptured device errors: ${uncaptured.slice(0, 5).join(' | ')}`);
  out.finished = new Date().toISOString();
  save();
  table();
  if (JSON_OUT) console.log(`wrote ${JSON_OUT}`);
}

await main();
try {
  (device as GPUDevice | null)?.destroy();
} catch {
  /* ignore */
}
process.exit(0);
