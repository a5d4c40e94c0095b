// Batch normalisation over NCHW (statistics per channel C, over N·H·W), with the
// fusions a ResNet block wants: y = relu?((x − μ)·γ/√(σ² + ε) + β + residual?).
//
// Training statistics, numerically sound and with no readback:
//   1. statsPartial: grid (S, C). Workgroup (s, c) takes a run of images (about
//      4096 of channel c's M = N·H·W values) and computes their count, mean and
//      sum of squared deviations M2 in one pass over x: each lane (each vec4
//      component) sums x − k and (x − k)² with k its own first value, so how far
//      the data sit from 0 does not matter, only how far k sits from the lane's
//      mean (relative error of M2 about ε·(1 + (k − mean)²/σ²), at most about
//      ε·count since k is one of the values); the lanes' results are combined as
//      Chan et al. do (mean = Σ n_l·mean_l / n, taken relative to the run's first
//      value; M2 = Σ M2_l + Σ n_l·(mean_l − mean)²) by two sums across the workgroup.
//   2. statsFinalize: one workgroup; each thread merges a channel's S partials
//      with Chan et al.'s pairwise update (δ = mean_b − mean_a;
//      M2 = M2_a + M2_b + δ²·n_a·n_b/n), writes mean and 1/√(σ² + ε) (σ² = M2/M,
//      biased), and updates the running statistics in place with PyTorch's
//      convention: running = (1 − m)·running + m·batch, batch variance unbiased
//      (M2/(M − 1)); m = 1/num_batches_tracked when momentum is null (cumulative
//      average); num_batches_tracked += 1.
//   With policy.fusion.bnMerge the normalise kernel does step 2 itself: every workgroup
//   merges its channel's S partials (a few per lane, two sums across the workgroup), and
//   the workgroup of the channel's first image stores the statistics and the running
//   update; the backward's grad input merges its Σg, Σg·ĥ partials the same way and
//   stores dγ, dβ. Two dispatches fewer per batchnorm; the cumulative average (momentum
//   null) keeps the separate merge, its factor reading num_batches_tracked.
// Eval: evalStats turns the running statistics into (mean, 1/√(var + ε)).
// Apply: elementwise over whole (image, channel) planes (see elementMain).
// Backward (ĥ = (x − μ)/σ, g = dy masked by the relu, read from the output):
//   gradPartial / gradFinalize reduce Σg and Σg·ĥ per channel the same split way
//   (they are also dβ and dγ); gradInput writes
//   dx = γ/σ·(g − Σg/M − ĥ·Σg·ĥ/M) in training, γ/σ·g in eval, and dresidual = g.
//
// Planes of a multiple of 4 values are walked as vec4 (lavapipe: a vec4 access
// costs about what a scalar one does). The GPU layouts use workgroups no wider
// than a plane's vec4 count so small planes (8×8 = 16 vec4) do not leave lanes
// idle; the CPU rasteriser layouts are 8 lanes wide.
//
// Sums across a workgroup: on a CPU rasteriser whose subgroups have 8 lanes
// (lavapipe), the reductions are workgroups of one subgroup and subgroupAdd: no
// workgroup memory and no barrier (each barrier of a tree is a coroutine switch
// on llvmpipe, and workgroup memory costs more than a storage buffer there).
// Elsewhere, 64-lane trees in workgroup memory. device.policy.batchnorm.cpuLayouts = false
// selects the GPU layouts everywhere (tests).
//
// Half precision: each activation-shaped binding (x, y, dy, dx, the residual and its
// gradient) is stored as f32 or f16 on its own; loads convert to f32 and stores round,
// so every sum, statistic and the arithmetic are f32, as are the statistics, partials,
// γ, β, the running statistics and dγ, dβ. With every binding f32 the kernels are the
// f32 ones (the conversions are identities) under their old pipeline keys.
import { wgsl } from 'wgsl-preprocessor/wgsl-preprocessor.js';
import type { AdapterProfile, Binding as DeviceBinding, Device, PooledTexture } from '../gpu/device.ts';
import { rawFits, rawStore } from './rawTexture.ts';
import { type FloatType, type Operand, floatType } from './operand.ts';
import { FLAT_INDEX, UniformWriter, WG, enableF16, grid1d, hasSubgroupsOf8, isSoftwareAdapter, loadF32, storeElem, vecElem } from './common.ts';

const RWG = 64;

/** How a kernel walks the activations: vec4 or scalar elements, and its workgroup size. */
interface Walk {
  v4: boolean;
  wg: number;
}

/** vec4 when the plane is a multiple of 4; workgroup = the plane's elements up to `max`, a power of two ≥ 8. */
function walkFor(g: BnGeometry, max: number): Walk {
  const v4 = g.plane % 4 === 0;
  const n = v4 ? g.plane / 4 : g.plane;
  return { v4, wg: Math.min(max, Math.max(8, 2 ** Math.ceil(Math.log2(n)))) };
}


/** How the per-channel reductions run on this device: one 8-lane subgroup per workgroup, or 64-lane trees. */
function reduceWalk(device: AdapterProfile, g: BnGeometry): Walk & { sg: boolean } {
  if (device.policy.batchnorm.cpuLayouts && isSoftwareAdapter(device) && hasSubgroupsOf8(device)) return { v4: g.plane % 4 === 0, wg: 8, sg: true };
  return { ...walkFor(g, RWG), sg: false };
}

const walkKey = (w: Walk): string => `${w.v4 ? 'v4' : 's'}${w.wg}`;
/** the f32 compute element's zero, the sum of its components, and the plane length in elements */
const Z = (w: Walk): string => vecElem(w.v4).Z;
const HSUM = (w: Walk, e: string): string => (w.v4 ? `dot(${e}, vec4<f32>(1.0))` : `(${e})`);
const PLANE = (w: Walk): string => (w.v4 ? '(p.plane / 4u)' : 'p.plane');

/** Activation tensors (walked elementwise, each stored as f32 or f16); the others (stats, γ, β, partials) stay f32. */
type Activation = 'x' | 'y' | 'dy' | 'dx' | 'res' | 'dres';
const ACTIVATIONS: readonly Activation[] = ['x', 'y', 'dy', 'dx', 'res', 'dres'];
const isActivation = (name: string): name is Activation => (ACTIVATIONS as readonly string[]).includes(name);
/** The storage types of a kernel's activations (f32 where absent). */
type ActTypes = Partial<Record<Activation, FloatType>>;

/** The storage types of the activation operands a kernel uses (labels refused, naming the kernel). */
function actTypes(what: string, ops: Partial<Record<Activation, Operand | undefined>>): ActTypes {
  const t: ActTypes = {};
  for (const k of ACTIVATIONS) {
    const o = ops[k];
    if (o) t[k] = floatType(o, what);
  }
  return t;
}

/** Pipeline-key and label suffix naming the f16 activations: '' when all are f32, so the f32 kernels keep their keys and labels. */
function f16Tag(t: ActTypes): string {
  const half = ACTIVATIONS.filter((k) => t[k] === 'f16');
  return half.length ? ` f16 ${half.join(',')}` : '';
}

/** WGSL: activation `name` at index `at` (default i) as the f32 compute type. */
const LD = (w: Walk, name: Activation, at = 'i'): string => loadF32(w.v4, `${name}[${at}]`);
/** WGSL: an f32 value as activation `name`'s storage element (rounded where that is f16). */
const ST = (w: Walk, t: ActTypes, name: Activation, value: string): string => `${storeElem(t[name] ?? 'f32', w.v4)}(${value})`;
/** WGSL module head: `enable f16;` where any activation is f16 (directives precede every declaration). */
const ENABLE = (t: ActTypes): string => enableF16(...ACTIVATIONS.map((k) => t[k] ?? 'f32'));

/** The shape of a batchnorm problem: x is [N, C, H, W] viewed as C channels of M = N·H·W values. */
export interface BnGeometry {
  batch: number;
  channels: number;
  /** H·W */
  plane: number;
}

/**
 * How each channel's N·H·W values are split for the per-channel reductions: by
 * images, `chunk` images (about 4096 values or more) per workgroup, at most 64 parts.
 */
export function bnSplits(g: BnGeometry): { splits: number; chunk: number } {
  if (g.batch * g.plane === 0) return { splits: 0, chunk: 1 }; // no values: nothing to dispatch
  let chunk = Math.max(1, Math.ceil(4096 / g.plane));
  const splits = Math.min(64, Math.ceil(g.batch / chunk));
  chunk = Math.ceil(g.batch / splits);
  return { splits: Math.ceil(g.batch / chunk), chunk };
}

/** Storage bindings of a kernel variant, in binding order (the uniform block comes last); 'raw': a raw texture written (rawTexture.ts). */
type Binding = [name: string, access: 'read' | 'read_write' | 'raw', type?: string];

function declare(bs: Binding[], params: string, w?: Walk, t: ActTypes = {}): string {
  const lines = bs.map(([name, access, type], i) =>
    access === 'raw'
      ? `@group(0) @binding(${i}) var ${name}: texture_storage_2d_array<rgba32float, write>;`
      : `@group(0) @binding(${i}) var<storage, ${access}> ${name}: array<${type ?? (w && isActivation(name) ? storeElem(t[name] ?? 'f32', w.v4) : 'f32')}>;`,
  );
  lines.push(`@group(0) @binding(${bs.length}) var<uniform> p: ${params};`);
  return lines.join('\n');
}

// Walks channel c's values in images begin .. end−1: each thread takes elements
// (f32 or vec4) lid, lid + wg, … of every plane, so no element divides (CPUs have no vector
// integer division; on GPUs it is a long sequence). BODY uses i, the index in x.
function channelWalk(body: string, w: Walk): string {
  return /* wgsl */ `
  for (var b = begin; b < end; b++) {
    let base = (b * p.channels + c) * ${PLANE(w)};
    for (var q = lid.x; q < ${PLANE(w)}; q += ${w.wg}u) {
      let i = base + q;
      ${body}
    }
  }`;
}

const SPLIT_PARAMS = /* wgsl */ `
struct SplitParams { channels: u32, plane: u32, batch: u32, chunk: u32, splits: u32, _p0: u32, _p1: u32, _p2: u32 }`;

function splitParams(g: BnGeometry): Uint8Array {
  const { splits, chunk } = bnSplits(g);
  return new UniformWriter().u32(g.channels, g.plane, g.batch, chunk, splits, 0, 0, 0).bytes();
}

// ------------------------------------------------------------ training stats

/**
 * WGSL: `laneSum(v)`, the sum of v over the workgroup's lanes, returned to every
 * lane (uniform control flow): subgroupAdd where the workgroup is one subgroup,
 * else a tree in workgroup memory.
 */
function laneSumFn(w: Walk & { sg: boolean }, type: 'f32' | 'vec2<f32>'): string {
  if (w.sg) return `fn laneSum(v: ${type}) -> ${type} { return subgroupAdd(v); }`;
  return /* wgsl */ `
var<workgroup> tree: array<${type}, ${w.wg}>;
fn laneSum(v: ${type}) -> ${type} {
  tree[lidx] = v;
  workgroupBarrier();
  for (var s = ${w.wg / 2}u; s > 0u; s = s / 2u) {
    if (lidx < s) { tree[lidx] += tree[lidx + s]; }
    workgroupBarrier();
  }
  let total = tree[0];
  workgroupBarrier();
  return total;
}`;
}

/**
 * The opening of a per-channel reduction kernel over the bindings `bs`, up to
 * where workgroup (s, c) knows its run of images begin .. end − 1 of channel c.
 */
function reductionHead(bs: Binding[], w: Walk & { sg: boolean }, sumType: 'f32' | 'vec2<f32>', t: ActTypes): string {
  return /* wgsl */ `
${ENABLE(t)}
${w.sg ? 'enable subgroups;' : ''}
${SPLIT_PARAMS}
${declare(bs, 'SplitParams', w, t)}
var<private> lidx: u32;
${laneSumFn(w, sumType)}

@compute @workgroup_size(${w.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  lidx = lid.x;
  let s = wid.x;
  let c = wid.y;
  let begin = s * p.chunk;
  let end = min(p.batch, begin + p.chunk);`;
}

const statsPartialSource = (w: Walk & { sg: boolean }, t: ActTypes): string => /* wgsl */ `
${reductionHead([['x', 'read'], ['partials', 'read_write']], w, 'f32', t)}
  let first = (begin * p.channels + c) * ${PLANE(w)};
  // the lane's shift: its first value (lanes past a small plane take the plane's last; they count nothing)
  let shift = ${LD(w, 'x', `first + min(lid.x, ${PLANE(w)} - 1u)`)};
  // the run's first value: the lanes' means are summed relative to it (a constant channel's mean comes out exact)
  let origin = f32(x[first]${w.v4 ? '.x' : ''});
  // how many elements the lane takes: lid, lid + wg, … of each plane, in every image of the run
  let perPlane = select(0u, (${PLANE(w)} - 1u - lid.x) / ${w.wg}u + 1u, lid.x < ${PLANE(w)});
  let count = f32((end - begin) * perPlane);
  var s1 = ${Z(w)};
  var s2 = ${Z(w)};
  ${channelWalk(`let d = ${LD(w, 'x')} - shift; s1 += d; s2 += d * d;`, w)}
  // per component: mean_l = shift + s1/count, M2_l = s2 − s1²/count
  let inv = 1.0 / max(count, 1.0);
  let laneMean = shift + s1 * inv;
  let laneM2 = max(s2 - s1 * s1 * inv, ${Z(w)});
  let n = f32((end - begin) * p.plane);
  let mean = origin + laneSum(count * ${HSUM(w, 'laneMean - origin')}) / n;
  let dm = laneMean - mean;
  let m2 = laneSum(${HSUM(w, 'laneM2')} + count * ${HSUM(w, 'dm * dm')});
  if (lid.x == 0u) {
    let o = (c * p.splits + s) * 3u;
    partials[o] = n;
    partials[o + 1u] = mean;
    partials[o + 2u] = m2;
  }
}`;

const statsFinalizeSource = (running: boolean, nbtType: 'i32' | 'f32' | null, coef: 'none' | 'plain' | 'affine' = 'none'): string => {
  const bs: Binding[] = [['partials', 'read'], ['stats', 'read_write']];
  if (running) bs.push(['runningMean', 'read_write'], ['runningVar', 'read_write']);
  if (nbtType) bs.push(['batchesTracked', 'read_write', nbtType]);
  if (coef !== 'none') bs.push(['coef', 'read_write', 'vec4<f32>']);
  if (coef === 'affine') bs.push(['gamma', 'read'], ['beta', 'read']);
  return wgsl`
struct Params { channels: u32, splits: u32, eps: f32, momentum: f32, cumulative: u32, _p0: u32, _p1: u32, _p2: u32 }
${declare(bs, 'Params')}

@compute @workgroup_size(${RWG})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
#if ${nbtType !== null}
  let tracked = batchesTracked[0];
  // every thread has read the old count before thread 0 replaces it
  storageBarrier();
  if (lid.x == 0u) { batchesTracked[0] = tracked + 1; }
  let factor = select(p.momentum, 1.0 / (f32(tracked) + 1.0), p.cumulative != 0u);
#else
  let factor = p.momentum;
#endif
  for (var c = lid.x; c < p.channels; c += ${RWG}u) {
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var s = 0u; s < p.splits; s++) {
      let o = (c * p.splits + s) * 3u;
      let nb = partials[o];
      if (nb == 0.0) { continue; }
      let total = n + nb;
      let delta = partials[o + 1u] - mean;
      mean += delta * (nb / total);
      m2 += partials[o + 2u] + delta * delta * (n * nb / total);
      n = total;
    }
    let invstd = inverseSqrt(m2 / n + p.eps);
    stats[c] = mean;
    stats[p.channels + c] = invstd;
#if ${coef === 'affine'}
    coef[c] = vec4<f32>(mean, invstd * gamma[c], beta[c], 0.0); // bnApply's k and shift, the same products
#endif
#if ${coef === 'plain'}
    coef[c] = vec4<f32>(mean, invstd, 0.0, 0.0);
#endif
#if ${running}
    runningMean[c] = (1.0 - factor) * runningMean[c] + factor * mean;
    runningVar[c] = (1.0 - factor) * runningVar[c] + factor * (m2 / max(n - 1.0, 1.0));
#endif
  }
}`;
};

export interface BnRunning {
  runningMean: Operand;
  runningVar: Operand;
  numBatchesTracked?: Operand | undefined;
}

/**
 * Records the batch statistics of x into `stats` ([2·C]: means, then 1/√(σ² + ε))
 * and, when given, the running-statistics update. `scratch` holds S·C·3 floats.
 */
export function batchStats(
  device: Device,
  x: Operand,
  g: BnGeometry,
  stats: Operand,
  scratch: Operand,
  eps: number,
  momentum: number | null,
  running?: BnRunning,
  coef?: BnCoefficients,
): void {
  const splits = batchStatsPartials(device, x, g, scratch);
  batchStatsFromPartials(device, scratch, splits, g, stats, eps, momentum, running, coef);
}

/**
 * Per channel c, vec4(mean, k, shift, 0) with bnApply's k = 1/σ·γ (1/σ without γ) and shift = β (0): what a
 * conv's batchnorm + relu prologue reads with one load per channel (kernels/conv2dRows.ts InputPrologue).
 */
export interface BnCoefficients {
  coef: Operand;
  gamma?: Operand | undefined;
  beta?: Operand | undefined;
}

/**
 * The first half of batchStats: each channel's count, mean and M2 over runs of images,
 * `splits` partials per channel at (c·splits + s)·3 of `scratch`, for batchStatsFromPartials
 * or a normalise that merges them itself (bnApply's `merge`). Returns splits.
 */
export function batchStatsPartials(device: Device, x: Operand, g: BnGeometry, scratch: Operand): number {
  const { splits } = bnSplits(g);
  if (scratch.size < splits * g.channels * 3) throw new Error(`batchnorm: ${splits} statistics partials of ${g.channels} channels need ${splits * g.channels * 3} floats, got ${scratch.size}`);
  const w = reduceWalk(device, g);
  const t = actTypes('batchnorm statistics', { x });
  const partial = device.pipeline(`bn statsPartial:${w.sg}:${walkKey(w)}${f16Tag(t)}`, `batchnorm statistics (partial)${f16Tag(t)}`, () => statsPartialSource(w, t));
  device.dispatch(partial, [x.buffer, scratch.buffer, device.uniforms(splitParams(g))], [splits, g.channels]);
  return splits;
}

/**
 * The second half of batchStats: merges `splits` partials per channel (count, mean, M2
 * at (c·splits + s)·3, a zero count skipped) into `stats` and the running statistics.
 * Also what a convolution's epilogue wrote (kernels/conv2dRows.ts statsEpilogue).
 */
export function batchStatsFromPartials(
  device: Device,
  scratch: Operand,
  splits: number,
  g: BnGeometry,
  stats: Operand,
  eps: number,
  momentum: number | null,
  running?: BnRunning,
  coef?: BnCoefficients,
): void {
  if (coef && coef.coef.size < 4 * g.channels) throw new Error(`batchnorm: prologue coefficients of ${g.channels} channels need ${4 * g.channels} floats, got ${coef.coef.size}`);
  if (scratch.size < splits * g.channels * 3) throw new Error(`batchnorm: ${splits} statistics partials of ${g.channels} channels need ${splits * g.channels * 3} floats, got ${scratch.size}`);
  const nbt = running?.numBatchesTracked;
  if (nbt?.dtype === 'f16') throw new Error('batchnorm: num_batches_tracked must be i32 or f32, got f16');
  const nbtType = nbt ? (nbt.dtype as 'i32' | 'f32') : null;
  const ck = !coef ? 'none' : coef.gamma ? 'affine' : 'plain';
  const finalize = device.pipeline(`bn statsFinalize:${!!running}:${nbtType}:${ck}`, `batchnorm statistics (merge, running update${coef ? ', prologue coefficients' : ''})`, () =>
    statsFinalizeSource(!!running, nbtType, ck),
  );
  const u = new UniformWriter().u32(g.channels, splits).f32(eps, momentum ?? 0).u32(momentum === null ? 1 : 0, 0, 0, 0);
  const bindings: (GPUBuffer | GPUBufferBinding)[] = [scratch.buffer, stats.buffer];
  if (running) bindings.push(running.runningMean.buffer, running.runningVar.buffer);
  if (nbt) bindings.push(nbt.buffer);
  if (coef) bindings.push(coef.coef.buffer);
  if (coef?.gamma) bindings.push(coef.gamma.buffer, coef.beta!.buffer);
  bindings.push(device.uniforms(u.bytes()));
  device.dispatch(finalize, bindings, [1]);
}

const evalStatsSource = /* wgsl */ `
const WG = ${WG}u;
struct Params { channels: u32, eps: f32 }
${declare([['runningMean', 'read'], ['runningVar', 'read'], ['stats', 'read_write']], 'Params')}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = ${FLAT_INDEX};
  if (c >= p.channels) { return; }
  stats[c] = runningMean[c];
  stats[p.channels + c] = inverseSqrt(runningVar[c] + p.eps);
}`;

/** Records stats = (running mean, 1/√(running var + ε)), so eval mode shares the training kernels. */
export function runningStats(device: Device, runningMean: Operand, runningVar: Operand, stats: Operand, eps: number): void {
  const pipeline = device.pipeline('bn evalStats', 'batchnorm eval statistics', () => evalStatsSource);
  const u = device.uniforms(new UniformWriter().u32(runningMean.size).f32(eps).bytes());
  device.dispatch(pipeline, [runningMean.buffer, runningVar.buffer, stats.buffer, u], grid1d(runningMean.size));
}

// ------------------------------------------------------------------- apply

export interface BnFusion {
  affine: boolean;
  relu: boolean;
  residual: boolean;
}

// Elementwise kernels (apply, grad input) walk whole (image, channel) planes, so a
// channel and its per-channel values are workgroup-uniform and no element divides.
// On GPUs each 64-thread workgroup takes planes one after another (several when
// planes are small, about 1024 values in all). On CPU rasterisers a workgroup is
// 8 lanes and takes one channel in a run of images, as the reductions do: the
// per-channel values are loaded once per run, not once per plane (on llvmpipe each
// is a storage-buffer load as dear as a vec4 of the activation).
const PWG = 64;

/** An elementwise kernel's walk: by channel runs (`byChannel`, CPU rasterisers) or by groups of planes. */
type ElementWalk = Walk & { byChannel: boolean };

function elementWalk(device: AdapterProfile, g: BnGeometry): ElementWalk {
  if (device.policy.batchnorm.cpuLayouts && isSoftwareAdapter(device)) return { v4: g.plane % 4 === 0, wg: 8, byChannel: true };
  return { ...walkFor(g, PWG), byChannel: false };
}

/**
 * Which kernel layouts batchnorm takes for geometry g on this adapter (the planner of
 * this op family): per-channel reductions by one 8-lane subgroup per workgroup or by
 * 64-lane trees; the elementwise passes (normalise, grad input) by channel over runs of
 * images (CPU rasterisers) or by planes; vec4 or scalar elements.
 */
export function planBatchNorm(p: AdapterProfile, g: BnGeometry): { reduction: 'subgroup' | 'tree'; elementwise: 'by-channel' | 'planes'; vec4: boolean; rawGradInput: boolean } {
  const r = reduceWalk(p, g);
  const e = elementWalk(p, g);
  return { reduction: r.sg ? 'subgroup' : 'tree', elementwise: e.byChannel ? 'by-channel' : 'planes', vec4: e.v4, rawGradInput: rawGradInputFits(p, g, e) };
}

/** Whether the grad input can write an f32 dx as a raw texture (bnGradInput's rawDx): vec4 runs by channel of whole raw rows. */
function rawGradInputFits(p: AdapterProfile, g: BnGeometry, w: ElementWalk): boolean {
  return w.byChannel && w.v4 && rawFits(p, g.channels * g.plane, g.batch);
}

// splits, eps, momentum: of a kernel that merges per-channel partials itself (ElementMerge)
const ELEMENT_PARAMS = /* wgsl */ `
struct ElementParams { planes: u32, channels: u32, plane: u32, count: u32, perGroup: u32, batch: u32, chunk: u32, splits: u32,
  eps: f32, momentum: f32, _p0: u32, _p1: u32 }`;

function planesPerGroup(g: BnGeometry): number {
  return Math.max(1, Math.floor(1024 / g.plane));
}

function elementParams(g: BnGeometry, chunk: number, m?: { splits: number; eps?: number; momentum?: number }): Uint8Array {
  return new UniformWriter()
    .u32(g.batch * g.channels, g.channels, g.plane, g.batch * g.plane, planesPerGroup(g), g.batch, chunk, m?.splits ?? 0)
    .f32(m?.eps ?? 0, m?.momentum ?? 0)
    .u32(0, 0)
    .bytes();
}

/** Dispatches an elementwise kernel: its bindings, then the uniform block, over its grid. */
function dispatchElement(
  device: Device,
  pipeline: GPUComputePipeline,
  bindings: DeviceBinding[],
  g: BnGeometry,
  w: ElementWalk,
  m?: { splits: number; eps?: number; momentum?: number },
): void {
  const { splits, chunk } = bnSplits(g);
  const grid: [number, number] = w.byChannel ? [splits, g.channels] : grid1d(Math.ceil((g.batch * g.channels) / planesPerGroup(g)), 1);
  device.dispatch(pipeline, [...bindings, device.uniforms(elementParams(g, chunk, m))], grid);
}

// ------------------------------------------- merging partials in the elementwise pass

/**
 * policy.fusion.bnMerge: the normalise (grad input) merges the channel's statistics
 * (backward sums) partials itself, in every workgroup, instead of a merge dispatch
 * before it; the workgroup that takes the channel's first image (`writer`) stores what
 * the merge dispatch stored (the statistics and running statistics; dγ and dβ). A merge
 * is a few partials per lane and two sums across the workgroup, against a workgroup's
 * thousands of elements; what it saves is a dispatch per batchnorm each way (on a GPU,
 * whose batch-128 steps are bound by recording dispatches, ~20% of a ResNet's).
 */
export interface ElementMerge {
  /** the partials: (count, mean, M2) triples for bnApply, (Σg, Σg·ĥ) pairs for bnGradInput, at (c·splits + s)·width */
  partials: Operand;
  splits: number;
}

/** The merge's sums across the workgroup: subgroupAdd where it is one 8-lane subgroup, else a tree. */
const mergeSubgroup = (device: AdapterProfile, w: ElementWalk): boolean => w.wg === 8 && hasSubgroupsOf8(device);

/**
 * WGSL: mergeStats(c) = (count, mean, M2) of channel c from its partials, each lane
 * merging partials lid, lid + wg, … pairwise as statsFinalize does (Chan et al.), the
 * lanes then by two sums taken relative to split 0's mean (as statsPartial's origin);
 * mergeSums(c) = (Σg, Σg·ĥ). Every lane calls them (the sums are workgroup-wide).
 */
function mergeFns(kind: 'stats' | 'sums', w: ElementWalk, sg: boolean): string {
  const head = `${laneSumFn({ ...w, sg }, 'vec2<f32>')}\nvar<private> lidx: u32;`;
  if (kind === 'sums') {
    return /* wgsl */ `${head}
fn mergeSums(c: u32) -> vec2<f32> {
  var acc = vec2<f32>(0.0);
  for (var s = lidx; s < p.splits; s += ${w.wg}u) {
    let o = (c * p.splits + s) * 2u;
    acc += vec2<f32>(partials[o], partials[o + 1u]);
  }
  return laneSum(acc);
}`;
  }
  return /* wgsl */ `${head}
fn mergeStats(c: u32) -> vec3<f32> {
  var n = 0.0;
  var mean = 0.0;
  var m2 = 0.0;
  for (var s = lidx; s < p.splits; s += ${w.wg}u) {
    let o = (c * p.splits + s) * 3u;
    let nb = partials[o];
    if (nb > 0.0) {
      let total = n + nb;
      let delta = partials[o + 1u] - mean;
      mean += delta * (nb / total);
      m2 += partials[o + 2u] + delta * delta * (n * nb / total);
      n = total;
    }
  }
  let origin = partials[c * p.splits * 3u + 1u];
  let t = laneSum(vec2<f32>(n, n * (mean - origin)));
  let mu = origin + t.y / max(t.x, 1.0);
  let dm = mean - mu;
  let all = laneSum(vec2<f32>(m2 + n * dm * dm, 0.0));
  return vec3<f32>(t.x, mu, all.x);
}`;
}

/**
 * An elementwise kernel over the bindings `bs`: PRELUDE (may use c, the channel)
 * once per channel run or plane, then BODY for every element i of it.
 */
function elementKernel(bs: Binding[], w: ElementWalk, t: ActTypes, prelude: string, body: string, fns = '', subgroups = false): string {
  return `${ENABLE(t)}\n${subgroups ? 'enable subgroups;\n' : ''}${ELEMENT_PARAMS}\n${declare(bs, 'ElementParams', w, t)}\n${fns}\n${elementMain(w, prelude, body)}`;
}

function elementMain(w: ElementWalk, prelude: string, body: string): string {
  const loop = /* wgsl */ `
    for (var q = lid.x; q < ${PLANE(w)}; q += ${w.wg}u) {
      let i = base + q;
      ${body}
    }`;
  if (w.byChannel) {
    return /* wgsl */ `@compute @workgroup_size(${w.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.y;
  let begin = wid.x * p.chunk;
  let writer = wid.x == 0u; // the workgroup of the channel's first image
  ${prelude}
  for (var b = begin; b < min(p.batch, begin + p.chunk); b++) {
    let base = (b * p.channels + c) * ${PLANE(w)};
    ${loop}
  }
}`;
  }
  return /* wgsl */ `@compute @workgroup_size(${w.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let first = (wid.x + wid.y * nwg.x) * p.perGroup;
  for (var plane = first; plane < min(first + p.perGroup, p.planes); plane++) {
    let c = plane % p.channels;
    let base = plane * ${PLANE(w)};
    let writer = plane < p.channels; // the channel's plane in image 0
    ${prelude}
    ${loop}
  }
}`;
}

/** How bnApply's merge (ElementMerge) stores the running statistics: none, or with num_batches_tracked as i32 / f32 or without. */
interface ApplyMergeKind {
  sg: boolean;
  running: boolean;
  nbt: 'i32' | 'f32' | null;
}

const applySource = (f: BnFusion, w: ElementWalk, t: ActTypes, merge?: ApplyMergeKind): string => {
  const bs: Binding[] = [['x', 'read'], ['stats', merge ? 'read_write' : 'read'], ['y', 'read_write']];
  if (f.affine) bs.push(['gamma', 'read'], ['beta', 'read']);
  if (f.residual) bs.push(['res', 'read']);
  if (merge) {
    bs.push(['partials', 'read']);
    if (merge.running) bs.push(['runningMean', 'read_write'], ['runningVar', 'read_write']);
    if (merge.nbt) bs.push(['batchesTracked', 'read_write', merge.nbt]);
  }
  // merged: the batch statistics from the partials (statsFinalize's arithmetic), stored by the writer
  const stats = merge
    ? wgsl`
  lidx = lid.x;
  let st = mergeStats(c);
  let mean = st.y;
  let invstd = inverseSqrt(st.z / st.x + p.eps);
  if (writer && lid.x == 0u) {
    stats[c] = mean;
    stats[p.channels + c] = invstd;
#if ${merge.running}
    runningMean[c] = (1.0 - p.momentum) * runningMean[c] + p.momentum * mean;
    runningVar[c] = (1.0 - p.momentum) * runningVar[c] + p.momentum * (st.z / max(st.x - 1.0, 1.0));
#endif
#if ${merge.nbt !== null}
    if (c == 0u) { batchesTracked[0] = batchesTracked[0] + 1; }
#endif
  }`
    : `
  let mean = stats[c];
  let invstd = stats[p.channels + c];`;
  const prelude = stats + wgsl`
#if ${f.affine}
  let k = invstd * gamma[c];
  let shift = beta[c];
#else
  let k = invstd;
  let shift = 0.0;
#endif`;
  return elementKernel(bs, w, t, prelude, applyBody(f, w, t), merge ? mergeFns('stats', w, merge.sg) : '', merge?.sg);
};

/** The normalise's elementwise body, given mean, k and shift for channel c: bnApply's and bnApplyCoefficients'. */
const applyBody = (f: BnFusion, w: ElementWalk, t: ActTypes): string => wgsl`
    var v = (${LD(w, 'x')} - mean) * k + shift;
#if ${f.residual}
    v += ${LD(w, 'res')};
#endif
#if ${f.relu}
    v = select(v, ${Z(w)}, v < ${Z(w)}); // a NaN stays NaN (max(NaN, 0) is 0 on lavapipe)
#endif
    y[i] = ${ST(w, t, 'y', 'v')};`;

/**
 * Records y = relu?(normalise(x)·γ + β + residual?). With `merge`, the batch statistics
 * come from batchStatsPartials' (or a conv epilogue's) partials, merged here, and are
 * stored into `stats` and the running statistics as batchStatsFromPartials would (a
 * momentum, not null: the cumulative average reads num_batches_tracked, which one
 * workgroup here would be incrementing while others read it).
 */
export function bnApply(
  device: Device,
  x: Operand,
  stats: Operand,
  y: Operand,
  g: BnGeometry,
  f: BnFusion,
  gamma?: Operand,
  beta?: Operand,
  residual?: Operand,
  merge?: ElementMerge & { eps: number; momentum: number; running?: BnRunning | undefined },
): void {
  const w = elementWalk(device, g);
  let mk: ApplyMergeKind | undefined;
  if (merge) {
    if (merge.partials.size < merge.splits * g.channels * 3) throw new Error(`batchnorm: ${merge.splits} statistics partials of ${g.channels} channels need ${merge.splits * g.channels * 3} floats, got ${merge.partials.size}`);
    const nbt = merge.running?.numBatchesTracked;
    if (nbt?.dtype === 'f16') throw new Error('batchnorm: num_batches_tracked must be i32 or f32, got f16');
    mk = { sg: mergeSubgroup(device, w), running: !!merge.running, nbt: nbt ? (nbt.dtype as 'i32' | 'f32') : null };
  }
  const key = `bn apply:${f.affine}:${f.residual}:${f.relu}${mk ? `:merge:${mk.sg}:${mk.running}:${mk.nbt}` : ''}`;
  const label = `batchnorm${mk ? ' (merging statistics)' : ''}${f.residual ? ' + residual' : ''}${f.relu ? ' + relu' : ''}`;
  const t = actTypes(label, { x, y, res: f.residual ? residual : undefined });
  const pipeline = device.pipeline(`${key}:${w.byChannel}:${walkKey(w)}${f16Tag(t)}`, `${label}${f16Tag(t)}`, () => applySource(f, w, t, mk));
  const bindings: (GPUBuffer | GPUBufferBinding)[] = [x.buffer, stats.buffer, y.buffer];
  if (f.affine) bindings.push(gamma!.buffer, beta!.buffer);
  if (f.residual) bindings.push(residual!.buffer);
  if (merge) {
    bindings.push(merge.partials.buffer);
    if (merge.running) bindings.push(merge.running.runningMean.buffer, merge.running.runningVar.buffer);
    if (merge.running?.numBatchesTracked) bindings.push(merge.running.numBatchesTracked.buffer);
  }
  dispatchElement(device, pipeline, bindings, g, w, merge);
}

/**
 * Records y = relu(x normalised by per-channel coefficients vec4(mean, k, shift, 0)) (BnCoefficients, as
 * batchStatsFromPartials wrote them): bnApply's values bit for bit, from the snapshot of γ and β taken when the
 * statistics were merged. How a batchnorm + relu output left for a conv prologue (policy.fusion.bnPrologue) is
 * written when something else reads it, whenever that is (γ and β may have been updated since).
 */
export function bnApplyCoefficients(device: Device, x: Operand, coef: Operand, y: Operand, g: BnGeometry): void {
  if (coef.size < 4 * g.channels) throw new Error(`batchnorm: coefficients of ${g.channels} channels need ${4 * g.channels} floats, got ${coef.size}`);
  const w = elementWalk(device, g);
  const t = actTypes('batchnorm + relu (coefficients)', { x, y });
  if (x.dtype !== 'f32' || y.dtype !== 'f32') throw new Error('batchnorm + relu (coefficients): f32 x and y only');
  const bs: Binding[] = [['x', 'read'], ['coef', 'read', 'vec4<f32>'], ['y', 'read_write']];
  const prelude = `
  let pc = coef[c];
  let mean = pc.x;
  let k = pc.y;
  let shift = pc.z;`;
  // bnApply's body with a relu
  const body = applyBody({ affine: true, relu: true, residual: false }, w, t);
  const pipeline = device.pipeline(`bn apply coef:${w.byChannel}:${walkKey(w)}`, 'batchnorm + relu (from prologue coefficients)', () => elementKernel(bs, w, t, prelude, body));
  dispatchElement(device, pipeline, [x.buffer, coef.buffer, y.buffer], g, w);
}

// ---------------------------------------------------------------- backward

/**
 * How a relu's backward masks dy: by the output y read back (y > 0), or (policy.fusion.
 * reluMask, no residual) by the output recomputed from x exactly as bnApply computed it:
 * the same mask bits without a pass over y, where y is f32. (An f16 y is 0 where a
 * positive v rounds to 0, which v > 0 does not see, and a compiler may drop a round trip
 * f32(f16(v)) (lavapipe does): engine/ops/batchnorm.ts reads an f16 y instead.) WGSL
 * prelude (channel c) and the masked g.
 */
type ReluMask = 'none' | 'output' | 'input';
function maskCode(mask: ReluMask, affine: boolean, w: Walk): { bindings: Binding[]; prelude: string; g: string } {
  if (mask === 'none') return { bindings: [], prelude: '', g: LD(w, 'dy') };
  if (mask === 'output') return { bindings: [['y', 'read']], prelude: '', g: `select(${Z(w)}, ${LD(w, 'dy')}, ${LD(w, 'y')} > ${Z(w)})` };
  return {
    bindings: affine ? [['maskGamma', 'read'], ['maskBeta', 'read']] : [],
    // bnApply's prelude and body, term for term: v = (x − mean)·k + shift
    prelude: affine ? 'let mk = stats[p.channels + c] * maskGamma[c];\n  let ms = maskBeta[c];' : 'let mk = stats[p.channels + c];\n  let ms = 0.0;',
    g: `select(${Z(w)}, ${LD(w, 'dy')}, (${LD(w, 'x')} - stats[c]) * mk + ms > ${Z(w)})`,
  };
}

const gradPartialSource = (mask: ReluMask, affine: boolean, w: Walk & { sg: boolean }, t: ActTypes): string => {
  const m = maskCode(mask, affine, w);
  const bs: Binding[] = [['x', 'read'], ['dy', 'read'], ['stats', 'read'], ['partials', 'read_write'], ...m.bindings];
  return wgsl`
${reductionHead(bs, w, 'vec2<f32>', t)}
  let mean = stats[c];
  let invstd = stats[p.channels + c];
  ${m.prelude}
  var accG = ${Z(w)};
  var accGX = ${Z(w)};
  ${channelWalk(
    `let g = ${m.g};
      accG += g;
      accGX += g * (${LD(w, 'x')} - mean);`,
    w,
  )}
  let total = laneSum(vec2<f32>(${HSUM(w, 'accG')}, ${HSUM(w, 'accGX')} * invstd));
  if (lid.x == 0u) {
    let o = (c * p.splits + s) * 2u;
    partials[o] = total.x;
    partials[o + 1u] = total.y;
  }
}`;
};

const gradFinalizeSource = (paramGrads: boolean): string => {
  const bs: Binding[] = [['partials', 'read'], ['sums', 'read_write']];
  if (paramGrads) bs.push(['dgamma', 'read_write'], ['dbeta', 'read_write']);
  return wgsl`
const WG = ${WG}u;
${SPLIT_PARAMS}
${declare(bs, 'SplitParams')}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = ${FLAT_INDEX};
  if (c >= p.channels) { return; }
  var sg = 0.0;
  var sgx = 0.0;
  for (var s = 0u; s < p.splits; s++) {
    let o = (c * p.splits + s) * 2u;
    sg += partials[o];
    sgx += partials[o + 1u];
  }
  sums[c] = sg;
  sums[p.channels + c] = sgx;
#if ${paramGrads}
  dbeta[c] = sg;
  dgamma[c] = sgx;
#endif
}`;
};

/**
 * Records the per-channel sums Σg and Σg·ĥ into `sums` ([2·C]) and, when given,
 * into dγ (= Σg·ĥ) and dβ (= Σg). `scratch` holds S·C·2 floats.
 */
export function bnGradSums(
  device: Device,
  x: Operand,
  dy: Operand,
  stats: Operand,
  g: BnGeometry,
  relu: boolean,
  y: Operand | undefined,
  scratch: Operand,
  sums: Operand,
  dgamma?: Operand,
  dbeta?: Operand,
  maskFromInput?: { gamma?: Operand | undefined; beta?: Operand | undefined },
): void {
  const splits = bnGradPartials(device, x, dy, stats, g, relu, y, scratch, maskFromInput);
  bnGradSumsFromPartials(device, scratch, splits, g, sums, dgamma, dbeta);
}

/**
 * The first half of bnGradSums: Σg and Σg·ĥ over runs of images, `splits` partials per
 * channel at (c·splits + s)·2 of `scratch`, for bnGradSumsFromPartials or a grad input
 * that merges them itself (bnGradInput's `merge`). Returns splits.
 */
export function bnGradPartials(
  device: Device,
  x: Operand,
  dy: Operand,
  stats: Operand,
  g: BnGeometry,
  relu: boolean,
  y: Operand | undefined,
  scratch: Operand,
  maskFromInput?: { gamma?: Operand | undefined; beta?: Operand | undefined },
): number {
  const { splits } = bnSplits(g);
  if (scratch.size < splits * g.channels * 2) throw new Error(`batchnorm backward: ${splits} partials of ${g.channels} channels need ${splits * g.channels * 2} floats, got ${scratch.size}`);
  const w = reduceWalk(device, g);
  const mask: ReluMask = !relu ? 'none' : maskFromInput ? 'input' : 'output';
  const affine = !!maskFromInput?.gamma;
  const t = actTypes('batchnorm backward sums', { x, dy, y: mask === 'output' ? y : undefined });
  const tag = f16Tag(t);
  const partial = device.pipeline(`bn gradPartial:${mask}:${affine}:${w.sg}:${walkKey(w)}${tag}`, `batchnorm${relu ? ' + relu' : ''} backward sums (partial${mask === 'input' ? ', mask from x' : ''})${tag}`, () =>
    gradPartialSource(mask, affine, w, t),
  );
  const u = device.uniforms(splitParams(g));
  const pb: (GPUBuffer | GPUBufferBinding)[] = [x.buffer, dy.buffer, stats.buffer, scratch.buffer];
  if (mask === 'output') pb.push(y!.buffer);
  if (mask === 'input' && affine) pb.push(maskFromInput!.gamma!.buffer, maskFromInput!.beta!.buffer);
  pb.push(u);
  device.dispatch(partial, pb, [splits, g.channels]);
  return splits;
}

/**
 * The second half of bnGradSums: sums `splits` partials per channel (Σg, Σg·ĥ at
 * (c·splits + s)·2) into `sums` and dγ, dβ. Also what a conv grad input's epilogue
 * wrote (kernels/conv2dRows.ts BnBackwardEpilogue).
 */
export function bnGradSumsFromPartials(device: Device, scratch: Operand, splits: number, g: BnGeometry, sums: Operand, dgamma?: Operand, dbeta?: Operand): void {
  if (scratch.size < splits * g.channels * 2) throw new Error(`batchnorm backward: ${splits} partials of ${g.channels} channels need ${splits * g.channels * 2} floats, got ${scratch.size}`);
  const paramGrads = dgamma !== undefined && dbeta !== undefined;
  const finalize = device.pipeline(`bn gradFinalize:${paramGrads}`, 'batchnorm backward sums (merge)', () => gradFinalizeSource(paramGrads));
  const fb: (GPUBuffer | GPUBufferBinding)[] = [scratch.buffer, sums.buffer];
  if (paramGrads) fb.push(dgamma.buffer, dbeta.buffer);
  fb.push(device.uniforms(new UniformWriter().u32(g.channels, g.plane, g.batch, 0, splits, 0, 0, 0).bytes()));
  device.dispatch(finalize, fb, grid1d(g.channels));
}

/** How bnGradInput's merge (ElementMerge of the backward sums) runs: subgroup sums or a tree, and whether it stores dγ, dβ. */
interface GradMergeKind {
  sg: boolean;
  paramGrads: boolean;
}

const gradInputSource = (training: boolean, f: BnFusion, w: ElementWalk, t: ActTypes, maskFromInput = false, merge?: GradMergeKind, rawDx = false): string => {
  const bs: Binding[] = [['dy', 'read'], ['stats', 'read'], ['dx', rawDx ? 'raw' : 'read_write']];
  // the mask recomputed from x needs x (eval mode reads it for that alone) and β
  if (training || maskFromInput) bs.push(['x', 'read']);
  if (training) bs.push(merge ? ['partials', 'read'] : ['sums', 'read']);
  if (merge?.paramGrads) bs.push(['dgamma', 'read_write'], ['dbeta', 'read_write']);
  if (f.affine) bs.push(['gamma', 'read']);
  if (f.relu && !maskFromInput) bs.push(['y', 'read']);
  if (maskFromInput && f.affine) bs.push(['maskBeta', 'read']);
  if (f.residual) bs.push(['dres', 'read_write']);
  const mask = maskFromInput
    ? f.affine
      ? 'let mk = stats[p.channels + c] * gamma[c];\n  let ms = maskBeta[c];'
      : 'let mk = stats[p.channels + c];\n  let ms = 0.0;'
    : '';
  const prelude = `${mask}\n` + wgsl`
  let invstd = stats[p.channels + c];
#if ${f.affine}
  let k = gamma[c] * invstd;
#else
  let k = invstd;
#endif
#if ${training}
  let mean = stats[c];
  let inv = 1.0 / f32(p.count);
#endif
#if ${!!merge}
  lidx = lid.x;
  let sums = mergeSums(c);
  let meanG = sums.x * inv;
  let meanGX = sums.y * inv;
#if ${!!merge?.paramGrads}
  if (writer && lid.x == 0u) {
    dbeta[c] = sums.x;
    dgamma[c] = sums.y;
  }
#endif
#elif ${training}
  let meanG = sums[c] * inv;
  let meanGX = sums[p.channels + c] * inv;
#endif`;
  const body = wgsl`
#if ${maskFromInput}
    let g = select(${Z(w)}, ${LD(w, 'dy')}, (${LD(w, 'x')} - stats[c]) * mk + ms > ${Z(w)});
#elif ${f.relu}
    let g = select(${Z(w)}, ${LD(w, 'dy')}, ${LD(w, 'y')} > ${Z(w)});
#else
    let g = ${LD(w, 'dy')};
#endif
#if ${f.residual}
    dres[i] = ${ST(w, t, 'dres', 'g')};
#endif
#if ${training}
    let d = k * (g - meanG - (${LD(w, 'x')} - mean) * invstd * meanGX);
#else
    let d = k * g;
#endif
#if ${rawDx}
    ${rawStore('dx', `i - b * p.channels * ${PLANE(w)}`, 'b', 'd')}; // image b's texel (a by-channel vec4 walk: rawGradInputFits)
#else
    dx[i] = ${ST(w, t, 'dx', 'd')};
#endif`;
  return elementKernel(bs, w, t, prelude, body, merge ? mergeFns('sums', w, merge.sg) : '', merge?.sg);
};

/**
 * Records dx (and dresidual = the relu-masked gradient when the residual was
 * fused). In training the per-channel sums come from bnGradSums (`sums`), or, with
 * `merge`, from bnGradPartials' (or a conv epilogue's) partials merged here, which then
 * also stores dγ and dβ where they are given.
 */
export function bnGradInput(
  device: Device,
  x: Operand,
  dy: Operand,
  stats: Operand,
  g: BnGeometry,
  f: BnFusion,
  training: boolean,
  dx: Operand | { raw: PooledTexture },
  o: {
    sums?: Operand | undefined;
    merge?: (ElementMerge & { dgamma?: Operand | undefined; dbeta?: Operand | undefined }) | undefined;
    gamma?: Operand | undefined;
    y?: Operand | undefined;
    dres?: Operand | undefined;
    maskBeta?: Operand | undefined;
    maskFromInput?: boolean;
  },
): void {
  // the relu mask recomputed from x (o.maskFromInput: a relu without a residual, where y is x's alone)
  const fromX = f.relu && !f.residual && o.maskFromInput === true;
  const w = elementWalk(device, g);
  // dx as a raw texture (policy.fusion.rawGrad): f32, where the planner allows it
  const raw = 'raw' in dx ? dx.raw : undefined;
  if (raw && !rawGradInputFits(device, g, w)) throw new Error(`batchnorm grad input: a raw dx needs vec4 runs by channel of whole raw rows (batch ${g.batch}, ${g.channels} channels of ${g.plane})`);
  const merge = training ? o.merge : undefined;
  if (training && !merge && !o.sums) throw new Error('batchnorm grad input: training needs the backward sums or their partials');
  if (merge && merge.partials.size < merge.splits * g.channels * 2) throw new Error(`batchnorm backward: ${merge.splits} partials of ${g.channels} channels need ${merge.splits * g.channels * 2} floats, got ${merge.partials.size}`);
  const mk: GradMergeKind | undefined = merge ? { sg: mergeSubgroup(device, w), paramGrads: !!merge.dgamma && !!merge.dbeta } : undefined;
  const key = `bn gradInput:${training}:${f.affine}:${f.relu}:${f.residual}:${fromX}${mk ? `:merge:${mk.sg}:${mk.paramGrads}` : ''}${raw ? ':raw' : ''}`;
  const label = `batchnorm${f.residual ? ' + residual' : ''}${f.relu ? ' + relu' : ''} grad input${fromX ? ' (mask from x)' : ''}${mk ? ' (merging sums)' : ''}${raw ? ' (raw dx)' : ''}`;
  // the types of the activations the kernel binds
  const t = actTypes(label, {
    dy,
    dx: raw ? undefined : (dx as Operand),
    x: training || fromX ? x : undefined,
    y: f.relu && !fromX ? o.y : undefined,
    dres: f.residual ? o.dres : undefined,
  });
  if (raw && t.dy === 'f16') throw new Error('batchnorm grad input: a raw dx is f32 (dy is f16)');
  const pipeline = device.pipeline(`${key}:${w.byChannel}:${walkKey(w)}${f16Tag(t)}`, `${label}${f16Tag(t)}`, () => gradInputSource(training, f, w, t, fromX, mk, !!raw));
  // x is read in training mode or for the mask (eval's kernel otherwise does not declare it)
  const bindings: DeviceBinding[] = [dy.buffer, stats.buffer, raw ? raw.view : (dx as Operand).buffer];
  if (training || fromX) bindings.push(x.buffer);
  if (training) bindings.push(merge ? merge.partials.buffer : o.sums!.buffer);
  if (mk?.paramGrads) bindings.push(merge!.dgamma!.buffer, merge!.dbeta!.buffer);
  if (f.affine) bindings.push(o.gamma!.buffer);
  if (f.relu && !fromX) bindings.push(o.y!.buffer);
  if (fromX && f.affine) bindings.push(o.maskBeta!.buffer);
  if (f.residual) bindings.push(o.dres!.buffer);
  dispatchElement(device, pipeline, bindings, g, w, merge);
}
