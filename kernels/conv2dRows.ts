// The "row" kernels of the texture path (software adapters with subgroups of 8
// lanes: lavapipe), for the 1×1 and 3×3 "same" convolutions at stride 1 or 2 that
// CIFAR ResNets are made of: forward, grad input and weight gradient, reading NCHW
// activations as they are, without the NHWC4 repack of kernels/conv2dTexture.ts
// (whose kernels take every other geometry). Measured on lavapipe (BENCHMARKS.md):
// 3×3 forward, grad input and weight gradient at 55-75% of the FMA peak, against
// 12-47% for the repacked kernels.
//
//   input      the NCHW buffer copied byte for byte into an rgba32float texture
//              (16 texels = 64 floats per texture row, one layer per image): a
//              texel is 4 neighbouring pixels of one channel. The copy engine does
//              this at memcpy speed; the repack kernel it replaces is bound by
//              texture stores (2-3 GB/s) and was ~30% of a standalone conv.
//   lanes      one lane per 4 neighbouring output pixels of a row, 8 for a 3×3 at
//              stride 1 where rows are whole octets (so an output row of 8, 16 or
//              32 pixels is 1, 2 or 4 lanes of one subgroup); per input channel and
//              filter row a lane loads the texels under its pixels and takes the
//              pixel left of them (padding column) from its left neighbour by a
//              subgroup shuffle, the one right of them from its right neighbour.
//   weights    3×3: texel (c·3 + ky, m) = the 3 taps of filter row ky for input
//              channel c and output channel m; 1×1: texel (c4, m) = input channels
//              4·c4 … 4·c4+3 (an iteration then takes 4 channels), or, for a 1×1
//              forward, the weight tensor copied raw (already in that order). One
//              lane loads each of TM rows and every lane reads it by subgroupShuffle.
//   block      TM output channels × 4 or 8 pixels per lane, accumulators as vec4 over
//              4 pixels, each written once per input channel (llvmpipe blends every
//              loop-carried write), stored as vec4 into the NCHW output.
//
// Per input channel (3×3, stride 1, TM 16): 3 or 6 image texel loads, 6 weight
// loads, 48 weight shuffles, 576 or 1152 multiply-adds (the repacked correlation:
// 18 loads per 768). 1×1: per 4 input channels, 4·S image loads, TM/8 weight loads,
// TM shuffles, 16·TM multiply-adds.
//
// Lanes are the subgroup's invocations in order: subgroup_invocation_id is
// local_invocation_index mod 8, as on lavapipe, where alone this path runs.
//
// Grad input at stride 1 is the same kernel over dY with the weights flipped and
// transposed (a "same" convolution's full correlation has the same padding); for a
// 1×1 stride-2 convolution it is the 1×1 stride-1 kernel over dY whose results are
// scattered to every other pixel of every other row of dX (the rest zeros); for a
// 3×3 stride-2 one a kernel of its own (gradInputStride2Source). Weight gradients:
// rowGradWeightSource (1×1), rowGradWeight3x3Source (3×3, a matmul over the output
// pixels with the lanes along input channels).
import type { AdapterProfile, Device, PooledTexture } from '../gpu/device.ts';
import type { Operand } from './operand.ts';
import { UniformWriter } from './common.ts';
import type { ConvGeometry } from './convGeometry.ts';
import { copyRaw, rawFits, rawLoad } from './rawTexture.ts';

const XYZW = ['x', 'y', 'z', 'w'];
const ONE_BY_ONE_CHANNELS = 4; // 8 measured no faster
// 1×1 convs with more than 16 output channels take blocks of 32 (measured ~20% faster than 16; 64 no better)
const TM_1X1 = 32;
// input channels per iteration of a Winograd row kernel (its weights are packed for whole groups, zeros past C)
const WINO_CHANNELS = 3;

/**
 * The shell both row convolutions share: the raw input X, weights Wt, vec4 output Y;
 * each lane's 4 pixels (the xl-th of row oy of image n), TM output channels from m0;
 * lanes past the last pixel repeat it (they take part in the shuffles) and store nothing.
 */
function rowKernelShell(TM: number, hasBias: boolean, decl: string[], body: string[], stores: string[], extra: { bindings?: string[]; epilogue?: string[]; after?: string[]; fns?: string } = {}): string {
  return /* wgsl */ `enable subgroups;
struct P { c: u32, h: u32, w4: u32, ho: u32, lanesPerRow: u32, m: u32, lanes: u32, iters: u32 }
@group(0) @binding(0) var X: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var Wt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: P;
${hasBias ? '@group(0) @binding(4) var<storage, read> bias: array<f32>;' : ''}
${(extra.bindings ?? []).map((b, i) => `@group(0) @binding(${(hasBias ? 5 : 4) + i}) ${b}`).join('\n')}
${extra.fns ?? ''}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) sg: u32) {
  let m0 = wid.y * ${TM}u;
  let lane = wid.x * 64u + li;
  let g = min(lane, p.lanes - 1u);
  let xl = g % p.lanesPerRow;
  let row = g / p.lanesPerRow;
  let oy = row % p.ho;
  let n = row / p.ho;
  let hasLeft = xl > 0u;
  let hasRight = xl + 1u < p.lanesPerRow;
  ${decl.join('\n  ')}
  for (var cq = 0u; cq < p.iters; cq++) {
    ${body.join('\n    ')}
  }
  ${(extra.after ?? []).join('\n  ')}
  if (lane < p.lanes) {
    ${stores.join('\n    ')}
  }
  ${(extra.epilogue ?? []).join('\n  ')}
}`;
}

/**
 * The shell's grid with the output-channel blocks fastest (x) and the lanes' groups in y: the
 * workgroups that read the same input pixels, one per block of TM output channels, run back to back
 * while those texels are in cache (policy.conv.rowChannelsFastest; BENCHMARKS.md "Channel blocks first").
 */
function channelBlocksFastest(shell: string): string {
  const [m0, lane] = ['let m0 = wid.y * ', 'let lane = wid.x * 64u + li;'];
  if (!shell.includes(m0) || !shell.includes(lane)) throw new Error('row kernel: the shell has no grid to reorder');
  return shell.replace(m0, 'let m0 = wid.x * ').replace(lane, 'let lane = wid.y * 64u + li;');
}

/**
 * WGSL epilogue of a row forward (policy.fusion.bnStats): per output channel, each
 * subgroup's count, mean and sum of squared deviations M2 of its lanes' outputs, as
 * batchnorm's statistics partials (kernels/batchnorm.ts, statsFinalize merges them):
 * partial (channel, subgroup) at (channel · splits + subgroup) · 3. A lane's 4·V values
 * give its mean and M2 exactly from registers; the lanes are merged as Chan et al.
 * (mean = Σ n_l·mean_l / n, M2 = Σ M2_l + Σ n_l·(mean_l − mean)²) by subgroup sums.
 * Lanes past the last pixel count nothing.
 */
function statsEpilogue(TM: number, V: number, hasBias: boolean): { bindings: string[]; epilogue: string[] } {
  const e: string[] = [
    `let cnt = select(0.0, ${4 * V}.0, lane < p.lanes);`,
    'let sn = subgroupAdd(cnt);',
    'let sinv = 1.0 / max(sn, 1.0);',
    'let split = lane / 8u;',
  ];
  for (let m = 0; m < TM; m++) {
    const vals = Array.from({ length: V }, (_, v) => `(a${m}_${v}${hasBias ? ` + vec4<f32>(bias[min(m0 + ${m}u, p.m - 1u)])` : ''})`);
    e.push(`{ let u0 = ${vals[0]};`);
    for (let v = 1; v < V; v++) e.push(`  let u${v} = ${vals[v]};`);
    e.push(`  let lm = dot(${Array.from({ length: V }, (_, v) => `u${v}`).join(' + ')}, vec4<f32>(1.0)) * ${1 / (4 * V)};`);
    e.push(`  let lm2 = ${Array.from({ length: V }, (_, v) => `dot(u${v} - vec4<f32>(lm), u${v} - vec4<f32>(lm))`).join(' + ')};`);
    e.push('  let mean = subgroupAdd(cnt * lm) * sinv;');
    e.push('  let dm = lm - mean;');
    e.push('  let m2 = subgroupAdd(select(0.0, lm2 + cnt * dm * dm, lane < p.lanes));');
    e.push(`  if (sg == 0u && m0 + ${m}u < p.m) { let o = ((m0 + ${m}u) * ps.splits + split) * 3u; part[o] = sn; part[o + 1u] = mean; part[o + 2u] = m2; } }`);
  }
  return {
    bindings: ['var<storage, read_write> part: array<f32>;', 'var<uniform> ps: PS;'],
    epilogue: e,
  };
}

/**
 * A training batchnorm + relu applied to X as the kernel loads it (policy.fusion.bnPrologue):
 * the kernel is given the batchnorm's input and, per channel, vec4(mean, k, shift, 0) (kernels/
 * batchnorm.ts BnCoefficients, written by the statistics merge), and reads relu(bn(x)) without
 * the normalised activation ever being written. Forward and 3×3 weight gradient only (the
 * kernels that read X); padding stays zero (it is padding of the activation).
 */
export interface InputPrologue {
  coef: Operand;
}

/**
 * WGSL of the prologue over C channels: the coefficients as a uniform array (a storage load per
 * input channel in the row forward's loop measured 2× the cost: +26% of the kernel against +13%,
 * bench/experiments/prologue-conv.ts), the channel's coefficients, and act(raw texel, coefficients):
 * bnApply's arithmetic term for term (v = (x − mean)·k + shift; relu keeping NaN), so the values
 * equal the batchnorm's output bit for bit, and its backward's relu mask, recomputed from x the
 * same way (policy.fusion.reluMask), agrees with them.
 */
function prologueCode(C: number): { bindings: string[]; fns: string; coef: (c: string, tag: string) => string } {
  return {
    bindings: [`var<uniform> pco: array<vec4<f32>, ${C}>;`],
    fns: /* wgsl */ `fn act(r: vec4<f32>, pc: vec4<f32>) -> vec4<f32> {
  let v = (r - vec4<f32>(pc.x)) * pc.y + pc.z;
  return select(v, vec4<f32>(), v < vec4<f32>()); // a NaN stays NaN, as in bnApply
}`,
    coef: (c, tag) => `let pc${tag} = pco[${c}];`,
  };
}

/** The prologue's binding: C channels' coefficients, checked to hold them within a uniform binding (prologueFits). */
function prologueBinding(device: AdapterProfile, p: InputPrologue, C: number, kernel: string): GPUBufferBinding {
  if (p.coef.size < 4 * C || !prologueFits(device, C)) throw new Error(`${kernel}: the prologue's coefficients hold ${p.coef.size} floats, need ${4 * C} within a uniform binding`);
  return { buffer: p.coef.buffer, size: 16 * C };
}

/** Whether a kernel reading C input channels can take the prologue (its coefficients fit a uniform binding). */
export const prologueFits = (device: AdapterProfile, C: number): boolean => 16 * C <= device.limits.maxUniformBufferBindingSize;

/**
 * Whether the row kernels compute this convolution's forward (gradInput false) or
 * grad input (true): 1×1 or 3×3 "same" convolutions at stride 1 or 2 whose widths
 * are whole lanes of 4 pixels (3×3: 1, 2, 4 or 8 lanes per row, so that a row's
 * neighbours are in one subgroup), within the device's texture and grid limits.
 */
export function rowConvFits(device: AdapterProfile, g: ConvGeometry, gradInput: boolean): boolean {
  const k = g.kh;
  const s = g.strideH;
  if (g.kw !== k || g.strideW !== s || (k !== 1 && k !== 3) || g.padH !== (k - 1) / 2 || g.padW !== g.padH) return false;
  if (s !== 1 && s !== 2) return false;
  if (g.h % s !== 0 || g.w % (4 * s) !== 0 || g.ho !== g.h / s || g.wo !== g.w / s) return false;
  // the reading side: X (forward) or dY (grad input); lanes of 4 pixels along its rows
  // (forward) or dY's (grad input: the output pixels are dY's, scattered at stride s)
  const [c, h, w, rows, lanesPerRow] = gradInput ? [g.cout, g.ho, g.wo, g.ho, g.wo / 4] : [g.cin, g.h, g.w, g.ho, g.wo / 4];
  // neighbours come from the lanes of the same subgroup (3×3; stride-2 grad input: its right one)
  if (k === 3 && ![1, 2, 4, 8].includes(lanesPerRow)) return false;
  const l = device.limits;
  const mPad = (gradInput ? g.cin : g.cout) + 32; // weight rows, padded to at most a 32-row block
  return (
    rawFits(device, c * h * w, g.batch) &&
    c * k <= l.maxTextureDimension2D &&
    mPad <= l.maxTextureDimension2D &&
    Math.ceil((c * k * mPad) / 64) <= l.maxComputeWorkgroupsPerDimension && // the weight pack's 1-D grid
    Math.ceil((g.batch * rows * lanesPerRow) / 64) <= l.maxComputeWorkgroupsPerDimension
  );
}

/**
 * rawWeights (1×1 forward, C a multiple of 4): Wt is the weight tensor [M, C] copied
 * byte for byte (16 texels per row), so output channel m's quad cq is texel m·C/4 + cq;
 * rows past M read past the copy (an indeterminate value, never stored).
 * V (stride 1, not scattered): texels of output pixels per lane along the row (1 or 2);
 * with 2 a lane owns 8 pixels, and each shuffled weight feeds twice the multiply-adds.
 */
function rowConvSource(TM: number, K: number, S: number, hasBias: boolean, scatter: boolean, rawWeights = false, V = 1, accumulate = false, stats = false, bn?: { mask: BnBackwardEpilogue['mask']; affine: boolean }, wino = false, prologueChannels = 0): string {
  const pro = prologueChannels ? prologueCode(prologueChannels) : undefined;
  if (pro && (bn || scatter)) throw new Error('rowConvSource: an input prologue is for the forward');
  const P = (K - 1) / 2;
  // 1×1: a weight texel holds 4 input channels; an iteration takes CQ channels
  const CQ = K === 1 ? ONE_BY_ONE_CHANNELS : 1;
  if (wino && (K !== 3 || S !== 1 || scatter)) throw new Error('rowConvSource: Winograd F(4,3) rows are for 3×3 stride-1 correlations');
  const decl: string[] = [];
  // Winograd: the 6 products of each 4-pixel tile (ma: m0..m3, mb: m4, m5), turned into pixels after the loop
  for (let m = 0; m < TM; m++) for (let v = 0; v < V; v++) decl.push(wino ? `var ma${m}_${v} = vec4<f32>(); var mb${m}_${v} = vec2<f32>();` : `var a${m}_${v} = vec4<f32>();`);
  const wterms: [string, string][][][] = Array.from({ length: TM }, () => Array.from({ length: V }, () => []));
  const body: string[] = [];
  // terms[m][v]: the products summed into accumulator (m, v), as "weight|pixels"
  const terms: string[][][] = Array.from({ length: TM }, () => Array.from({ length: V }, () => []));
  if (CQ > 1) {
    for (let q = 0; q < CQ / 4; q++) {
      for (let g = 0; g < TM / 8; g++) {
        const t = `(m0 + ${8 * g}u + sg) * (p.c / 4u) + cq * ${CQ / 4}u + ${q}u`;
        body.push(`let w${q}_${g} = textureLoad(Wt, ${rawWeights ? `vec2<u32>((${t}) % 16u, (${t}) / 16u)` : `vec2<u32>(cq * ${CQ / 4}u + ${q}u, m0 + ${8 * g}u + sg)`}, 0u);`);
      }
      for (let m = 0; m < TM; m++) body.push(`let s${q}_${m} = subgroupShuffle(w${q}_${m >> 3}, ${m & 7}u);`);
    }
  }
  const T = S * V; // input texels per lane per row
  // Winograd: WINO_CHANNELS input channels per iteration, so each accumulator takes as many multiply-adds per
  // loop-carried write as the direct kernel's (3 filter rows × WINO_CHANNELS against its 9 taps)
  const CI = wino ? WINO_CHANNELS : CQ;
  for (let j = 0; j < CI; j++) {
    // channels past C (the last quad of a 1×1, the last group of a Winograd kernel) read channel C−1 against zero weights
    body.push(`let ci${j} = ${CI > 1 ? `min(cq * ${CI}u + ${j}u, p.c - 1u)` : 'cq'};`);
    if (pro) body.push(pro.coef(`ci${j}`, `${j}`));
    for (let ky = 0; ky < K; ky++) {
      const id = `${j}_${ky}`;
      body.push(`let iy${id} = i32(oy * ${S}u + ${ky}u) - ${P};`);
      body.push(`let t${id} = (ci${j} * p.h + u32(clamp(iy${id}, 0, i32(p.h) - 1))) * p.w4 + xl * ${T}u;`);
      body.push(`let ok${id} = iy${id} >= 0 && iy${id} < i32(p.h);`);
      for (let q = 0; q < T; q++) {
        const load = rawLoad('X', `t${id} + ${q}u`);
        body.push(`let x${id}_${q} = select(vec4<f32>(), ${pro ? `act(${load}, pc${j})` : load}, ok${id});`);
      }
      // input pixel i (relative to the lane's first texel) for i in [-P, 4T + P)
      const inp = (i: number): string => {
        if (i < 0) return `l${id}`;
        if (i >= 4 * T) return `r${id}`;
        return `x${id}_${i >> 2}.${XYZW[i & 3]}`;
      };
      const used = new Set<number>();
      for (let kx = 0; kx < K; kx++) for (let o = 0; o < 4 * V; o++) used.add(o * S - P + kx);
      if ([...used].some((i) => i < 0)) body.push(`let l${id} = select(0.0, subgroupShuffle(x${id}_${T - 1}.w, (sg + 7u) & 7u), hasLeft);`);
      if ([...used].some((i) => i >= 4 * T)) body.push(`let r${id} = select(0.0, subgroupShuffle(x${id}_0.x, (sg + 1u) & 7u), hasRight);`);
      if (wino) {
        // each tile's 6 input pixels d0 … d5 (its 4, the one left and the one right) by Bᵀ; the weights come as G·g
        for (let v = 0; v < V; v++) {
          const d = Array.from({ length: 6 }, (_, j) => inp(4 * v + j - 1));
          body.push(`let va${id}_${v} = vec4<f32>(4.0 * ${d[0]} - 5.0 * ${d[2]} + ${d[4]}, ${d[3]} + ${d[4]} - 4.0 * (${d[1]} + ${d[2]}), 4.0 * (${d[1]} - ${d[2]}) - ${d[3]} + ${d[4]}, 2.0 * (${d[3]} - ${d[1]}) - ${d[2]} + ${d[4]});`);
          body.push(`let vb${id}_${v} = vec2<f32>(2.0 * (${d[1]} - ${d[3]}) - ${d[2]} + ${d[4]}, 4.0 * ${d[1]} - 5.0 * ${d[3]} + ${d[5]});`);
        }
        for (let g = 0; g < TM / 8; g++) {
          const col = `((cq * ${CI}u + ${j}u) * 3u + ${ky}u) * 2u`;
          body.push(`let ua${id}_${g} = textureLoad(Wt, vec2<u32>(${col}, m0 + ${8 * g}u + sg), 0u);`);
          body.push(`let ub${id}_${g} = textureLoad(Wt, vec2<u32>(${col} + 1u, m0 + ${8 * g}u + sg), 0u).xy;`);
        }
        for (let m = 0; m < TM; m++) {
          body.push(`let qa${id}_${m} = subgroupShuffle(ua${id}_${m >> 3}, ${m & 7}u);`);
          body.push(`let qb${id}_${m} = subgroupShuffle(ub${id}_${m >> 3}, ${m & 7}u);`);
          for (let v = 0; v < V; v++) wterms[m]![v]!.push([`qa${id}_${m}|va${id}_${v}`, `qb${id}_${m}|vb${id}_${v}`]);
        }
        continue;
      }
      for (let kx = 0; kx < K; kx++) {
        for (let v = 0; v < V; v++) body.push(`let v${id}_${kx}_${v} = vec4<f32>(${[0, 1, 2, 3].map((px) => inp((4 * v + px) * S - P + kx)).join(', ')});`);
      }
      if (CQ > 1) {
        for (let m = 0; m < TM; m++) for (let v = 0; v < V; v++) terms[m]![v]!.push(`s${j >> 2}_${m}.${XYZW[j & 3]}|v${id}_0_${v}`);
      } else {
        for (let g = 0; g < TM / 8; g++) body.push(`let w${id}_${g} = textureLoad(Wt, vec2<u32>(cq * ${K}u + ${ky}u, m0 + ${8 * g}u + sg), 0u);`);
        for (let m = 0; m < TM; m++) {
          body.push(`let s${id}_${m} = subgroupShuffle(w${id}_${m >> 3}, ${m & 7}u);`);
          for (let kx = 0; kx < K; kx++) for (let v = 0; v < V; v++) terms[m]![v]!.push(`s${id}_${m}.${XYZW[kx]}|v${id}_${kx}_${v}`);
        }
      }
    }
  }
  const after: string[] = [];
  for (let m = 0; m < TM; m++) {
    for (let v = 0; v < V; v++) {
      if (wino) {
        const chain = (i: 0 | 1, acc: string): string =>
          wterms[m]![v]!.reduce((a, t) => {
            const [w, x] = t[i].split('|');
            return `fma(${w}, ${x}, ${a})`;
          }, acc);
        body.push(`ma${m}_${v} = ${chain(0, `ma${m}_${v}`)};`);
        body.push(`mb${m}_${v} = ${chain(1, `mb${m}_${v}`)};`);
        // the tile's 4 pixels by Aᵀ
        const [a, b] = [`ma${m}_${v}`, `mb${m}_${v}`];
        after.push(
          `let a${m}_${v} = vec4<f32>(${a}.x + ${a}.y + ${a}.z + ${a}.w + ${b}.x, ${a}.y - ${a}.z + 2.0 * (${a}.w - ${b}.x), ` +
            `${a}.y + ${a}.z + 4.0 * (${a}.w + ${b}.x), ${a}.y - ${a}.z + 8.0 * (${a}.w - ${b}.x) + ${b}.y);`,
        );
        continue;
      }
      const e = terms[m]![v]!.reduce((acc, t) => {
        const [w, x] = t.split('|');
        return `fma(vec4<f32>(${w}), ${x}, ${acc})`;
      }, `a${m}_${v}`);
      body.push(`a${m}_${v} = ${e};`);
    }
  }
  // scatter (grad input of a 1×1 stride-2 conv): the lane's 4 pixels go to every other
  // pixel of output row 2·oy (two vec4), and output row 2·oy + 1 is zeros
  const store = (m: number): string => {
    const b = hasBias ? ` + bias[m0 + ${m}u]` : '';
    if (!scatter) {
      const row = `((n * p.m + m0 + ${m}u) * p.ho + oy) * p.lanesPerRow * ${V}u + xl * ${V}u`;
      return Array.from({ length: V }, (_, v) => `Y[${row} + ${v}u] = a${m}_${v}${b};`).join(' ');
    }
    return `{ let o = ((n * p.m + m0 + ${m}u) * p.ho * 2u + oy * 2u) * p.lanesPerRow * 2u + xl * 2u;
      Y[o] = vec4<f32>(a${m}_0.x, 0.0, a${m}_0.y, 0.0); Y[o + 1u] = vec4<f32>(a${m}_0.z, 0.0, a${m}_0.w, 0.0);
      Y[o + p.lanesPerRow * 2u] = vec4<f32>(); Y[o + p.lanesPerRow * 2u + 1u] = vec4<f32>(); }`;
  };
  if (bn) {
    const b = bnBackwardCode(TM, bn.mask, bn.affine, Array.from({ length: TM }, (_, m) => store(m)), accumulate);
    const stores = b.stores.map((st, m) => `if (m0 + ${m}u < p.m) { ${st} }`);
    return withSplitParams(rowKernelShell(TM, hasBias, [...decl, ...b.decl], body, stores, { bindings: b.bindings, epilogue: b.epilogue, after }));
  }
  const stores = Array.from({ length: TM }, (_, m) => `if (m0 + ${m}u < p.m) { ${accumulate ? accumulating(store(m)) : store(m)} }`);
  const ep = stats ? statsEpilogue(TM, V, hasBias) : undefined;
  const shell = rowKernelShell(TM, hasBias, decl, body, stores, { bindings: [...(ep?.bindings ?? []), ...(pro?.bindings ?? [])], epilogue: ep?.epilogue ?? [], after, fns: pro?.fns ?? '' });
  return stats ? withSplitParams(shell) : shell;
}

// Grad input of a 3×3 stride-2 convolution with padding 1 (dX is 2·Ho × 2·Wo): the
// lane of dY pixels (t, 4·xl … 4·xl+3) makes dX rows 2t and 2t+1, columns 8·xl …
// 8·xl+7. Even rows and columns take tap 1 of dY pixel t (resp. ox); odd ones
// tap 0 of t+1 (ox+1) and tap 2 of t (ox), so a lane reads dY rows t and t+1 and
// the pixel right of its 4 from its right neighbour. Per dY channel and output
// channel: 9 vec4 multiply-adds into 4 accumulators (even/odd row × even/odd column).
const S2_TM = 8;
function gradInputStride2Source(accumulate = false, bn?: { mask: BnBackwardEpilogue['mask']; affine: boolean }): string {
  const TM = S2_TM;
  const decl: string[] = [];
  const body: string[] = [
    'let t0 = (cq * p.h + oy) * p.w4 + xl;',
    'let t1 = (cq * p.h + min(oy + 1u, p.h - 1u)) * p.w4 + xl;',
    `let d0 = ${rawLoad('X', 't0')};`,
    `let d1 = select(vec4<f32>(), ${rawLoad('X', 't1')}, oy + 1u < p.h);`,
    'let e0 = select(0.0, subgroupShuffle(d0.x, (sg + 1u) & 7u), hasRight);',
    'let e1 = select(0.0, subgroupShuffle(d1.x, (sg + 1u) & 7u), hasRight);',
    // dY pixels ox + 1 of rows t and t+1
    'let n0 = vec4<f32>(d0.y, d0.z, d0.w, e0);',
    'let n1 = vec4<f32>(d1.y, d1.z, d1.w, e1);',
  ];
  for (let ky = 0; ky < 3; ky++) body.push(`let w${ky} = textureLoad(Wt, vec2<u32>(cq * 3u + ${ky}u, m0 + sg), 0u);`);
  const f = (w: string, v: string, acc: string): string => `fma(vec4<f32>(${w}), ${v}, ${acc})`;
  for (let m = 0; m < TM; m++) {
    decl.push(`var ee${m} = vec4<f32>(); var eo${m} = vec4<f32>(); var oe${m} = vec4<f32>(); var oo${m} = vec4<f32>();`);
    for (let ky = 0; ky < 3; ky++) body.push(`let s${ky}_${m} = subgroupShuffle(w${ky}, ${m}u);`);
    body.push(`ee${m} = ${f(`s1_${m}.y`, 'd0', `ee${m}`)};`);
    body.push(`eo${m} = ${f(`s1_${m}.x`, 'n0', f(`s1_${m}.z`, 'd0', `eo${m}`))};`);
    body.push(`oe${m} = ${f(`s0_${m}.y`, 'd1', f(`s2_${m}.y`, 'd0', `oe${m}`))};`);
    body.push(`oo${m} = ${f(`s0_${m}.x`, 'n1', f(`s0_${m}.z`, 'd1', f(`s2_${m}.x`, 'n0', f(`s2_${m}.z`, 'd0', `oo${m}`))))};`);
  }
  const stores = Array.from({ length: TM }, (_, m) => `if (m0 + ${m}u < p.m) {
      let o = ((n * p.m + m0 + ${m}u) * p.ho * 2u + oy * 2u) * p.lanesPerRow * 2u + xl * 2u;
      Y[o] = vec4<f32>(ee${m}.x, eo${m}.x, ee${m}.y, eo${m}.y); Y[o + 1u] = vec4<f32>(ee${m}.z, eo${m}.z, ee${m}.w, eo${m}.w);
      let o1 = o + p.lanesPerRow * 2u;
      Y[o1] = vec4<f32>(oe${m}.x, oo${m}.x, oe${m}.y, oo${m}.y); Y[o1 + 1u] = vec4<f32>(oe${m}.z, oo${m}.z, oe${m}.w, oo${m}.w);
    }`);
  if (bn) {
    // the stores' own guard (m0 + m < p.m) stays outside the rewritten statements
    const inner = stores.map((st) => st.slice(st.indexOf('{') + 1, st.lastIndexOf('}')));
    const b = bnBackwardCode(TM, bn.mask, bn.affine, inner, accumulate);
    const guarded = b.stores.map((st, m) => `if (m0 + ${m}u < p.m) {${st}}`);
    return withSplitParams(rowKernelShell(TM, false, [...decl, ...b.decl], body, guarded, { bindings: b.bindings, epilogue: b.epilogue }));
  }
  return rowKernelShell(TM, false, decl, body, accumulate ? stores.map(accumulating) : stores);
}

// Weight texels: 3×3, texel (c·3 + ky, m) = taps kx of row ky for input channel c;
// 1×1, texel (c4, m) = input channels 4·c4 … 4·c4+3. Grad input: output channel m is
// the conv's input channel and c its output channel, the kernel rotated 180°
// (stride 1) or not (3×3 stride 2, whose kernel picks the taps itself).
const PackMode = { Forward: 0, Rotated: 1, Transposed: 2 } as const;
// Winograd (wino = 1, 3×3): two texels per (c·3 + ky, m), u = G·g of the row's taps g0, g1, g2
// (F(4,3) at 0, 1, −1, 2, −2, ∞): (g0/4, −(g0+g1+g2)/6, −(g0−g1+g2)/6, g0/24 + g1/12 + g2/6) and
// (g0/24 − g1/12 + g2/6, g2, 0, 0).
const packWeightSource = /* wgsl */ `
struct P { rows: u32, c: u32, k: u32, mode: u32, tw: u32, th: u32, cin: u32, wino: u32 }
@group(0) @binding(0) var<storage, read> W: array<f32>;
@group(0) @binding(1) var T: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(2) var<uniform> p: P;
fn weight(m: u32, c: u32, ky: u32, kx: u32) -> f32 {
  if (p.mode == ${PackMode.Forward}u) { return W[((m * p.cin + c) * p.k + ky) * p.k + kx]; }
  if (p.mode == ${PackMode.Transposed}u) { return W[((c * p.cin + m) * p.k + ky) * p.k + kx]; }
  return W[((c * p.cin + m) * p.k + (p.k - 1u - ky)) * p.k + (p.k - 1u - kx)];
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= p.tw * p.th) { return; }
  let tx = gid.x % p.tw;
  let m = gid.x / p.tw;
  var v = vec4<f32>();
  if (p.wino != 0u) {
    if (m < p.rows && tx / 6u < p.c) {
      let cky = tx / 2u;
      let g0 = weight(m, cky / 3u, cky % 3u, 0u);
      let g1 = weight(m, cky / 3u, cky % 3u, 1u);
      let g2 = weight(m, cky / 3u, cky % 3u, 2u);
      if (tx % 2u == 0u) {
        v = vec4<f32>(g0 / 4.0, -(g0 + g1 + g2) / 6.0, -(g0 - g1 + g2) / 6.0, g0 / 24.0 + g1 / 12.0 + g2 / 6.0);
      } else {
        v = vec4<f32>(g0 / 24.0 - g1 / 12.0 + g2 / 6.0, g2, 0.0, 0.0);
      }
    }
    textureStore(T, vec2<u32>(tx, m), 0u, v);
    return;
  }
  if (m < p.rows) {
    for (var j = 0u; j < 4u; j++) {
      if (p.k == 1u) {
        if (tx * 4u + j < p.c) { v[j] = weight(m, tx * 4u + j, 0u, 0u); }
      } else if (j < p.k) {
        v[j] = weight(m, tx / p.k, tx % p.k, j);
      }
    }
  }
  textureStore(T, vec2<u32>(tx, m), 0u, v);
}`;

/**
 * How many statistics partials per channel a row forward writes with fused.stats (one
 * per subgroup of 8 lanes): what its caller sizes them by (C·splits·3 floats) and
 * batchnorm merges (kernels/batchnorm.ts batchStatsFromPartials).
 */
export function rowConvStatsSplits(device: AdapterProfile, g: ConvGeometry, gradInput = false): number {
  // rowConv's grid: lanes of 4·V pixels over the output's rows (dY's for a stride-2 grad input)
  const stride2 = gradInput && g.strideH === 2;
  const [gridH, gridW] = gradInput ? [stride2 ? g.ho : g.h, stride2 ? g.wo : g.w] : [g.ho, g.wo];
  const S = gradInput ? 1 : g.strideH;
  const V = device.policy.conv.rowPixels === 8 && g.kh === 3 && S === 1 && !stride2 && gridW % 8 === 0 ? 2 : 1;
  return Math.ceil((g.batch * gridH * (gridW / (4 * V))) / 64) * 8;
}

/**
 * A batchnorm's backward folded into the epilogue of the conv grad input that produces
 * its dY (policy.fusion.bnBackward): Y is masked by the relu as it is stored (by x
 * recomputed as bnApply did, 'input', or by the batchnorm's output, 'output'), and each
 * subgroup's Σg and Σg·ĥ per channel are written as batchnorm's backward partials
 * ((c·splits + subgroup)·2, kernels/batchnorm.ts bnGradSumsFromPartials).
 */
export interface BnBackwardEpilogue {
  mask: 'none' | 'input' | 'output';
  /** the batchnorm's input (its shape is Y's) and [mean, 1/σ] */
  x: Operand;
  stats: Operand;
  /** 'input' with an affine batchnorm: γ and β */
  gamma?: Operand | undefined;
  beta?: Operand | undefined;
  /** 'output': the batchnorm's output */
  y?: Operand | undefined;
  partials: Operand;
  splits: number;
}

/** The WGSL of a BnBackwardEpilogue: bindings (after the shell's), per-channel loads, the stores rewritten, the subgroup sums. */
function bnBackwardCode(TM: number, mask: BnBackwardEpilogue['mask'], affine: boolean, stores: string[], accumulate: boolean): { bindings: string[]; decl: string[]; stores: string[]; epilogue: string[] } {
  const bindings = ['var<storage, read_write> part: array<f32>;', 'var<uniform> ps: PS;', 'var<storage, read> bx: array<vec4<f32>>;', 'var<storage, read> bst: array<f32>;'];
  if (mask === 'input' && affine) bindings.push('var<storage, read> bgamma: array<f32>;', 'var<storage, read> bbeta: array<f32>;');
  if (mask === 'output') bindings.push('var<storage, read> by: array<vec4<f32>>;');
  const decl: string[] = [];
  for (let m = 0; m < TM; m++) {
    decl.push(`let bc${m} = min(m0 + ${m}u, p.m - 1u);`, `let bm${m} = bst[bc${m}];`, `let bi${m} = bst[p.m + bc${m}];`);
    // bnApply's k and shift, term for term, so the mask has the forward's bits
    if (mask === 'input') decl.push(affine ? `let mk${m} = bst[p.m + bc${m}] * bgamma[bc${m}]; let ms${m} = bbeta[bc${m}];` : `let mk${m} = bst[p.m + bc${m}]; let ms${m} = 0.0;`);
    decl.push(`var sg${m} = vec4<f32>(); var sgx${m} = vec4<f32>();`);
  }
  const rewritten = stores.map((st, m) =>
    st.replace(/Y\[([^\]]+)\] = ([^;]+);/g, (_all, idx: string, expr: string) => {
      const g =
        mask === 'none'
          ? 'v_'
          : mask === 'input'
            ? `select(vec4<f32>(), v_, (bx[i_] - bm${m}) * mk${m} + ms${m} > vec4<f32>())`
            : 'select(vec4<f32>(), v_, by[i_] > vec4<f32>())';
      return `{ let i_ = ${idx}; let v_ = ${accumulate ? 'Y[i_] + ' : ''}${expr}; let g_ = ${g}; Y[i_] = g_; sg${m} += g_; sgx${m} += g_ * (bx[i_] - bm${m}); }`;
    }),
  );
  const epilogue = ['let split = lane / 8u;'];
  for (let m = 0; m < TM; m++) {
    epilogue.push(`{ let tg = subgroupAdd(dot(sg${m}, vec4<f32>(1.0))); let tgx = subgroupAdd(dot(sgx${m}, vec4<f32>(1.0)) * bi${m});`);
    epilogue.push(`  if (sg == 0u && m0 + ${m}u < p.m) { let o = ((m0 + ${m}u) * ps.splits + split) * 2u; part[o] = tg; part[o + 1u] = tgx; } }`);
  }
  return { bindings, decl, stores: rewritten, epilogue };
}

/** X (forward) or dY (grad input, grad weight) copied raw once for kernels that share it (caller releases): copyRaw of the whole tensor. */
export function rawActivation(device: Device, t: Operand, g: ConvGeometry, gradOutput: boolean): PooledTexture {
  return copyRaw(device, t, gradOutput ? g.cout * g.ho * g.wo : g.cin * g.h * g.w, g.batch);
}

/** The uniform block of an epilogue's partials (how many per channel), declared beside the shell's. */
function withSplitParams(shell: string): string {
  return shell.replace('struct P {', 'struct PS { splits: u32, _a: u32, _b: u32, _c: u32 }\nstruct P {');
}

/** WGSL stores `Y[i] = v;` made `Y[i] = Y[i] + v;`: the kernel adds into what Y holds (autograd's "add into" a gradient). */
function accumulating(store: string): string {
  return store.replace(/Y\[([^\]]+)\] = /g, 'Y[$1] = Y[$1] + ');
}

/**
 * Records Y = conv2d(X, W) (+ bias), or with `gradInput` dX = the convolution's grad
 * input from dY (stride 1: the flipped kernel; 1×1 stride 2: scattered; 3×3 stride 2:
 * gradInputStride2Source); needs rowConvFits(device, g, gradInput). `fused.raw`: the
 * input already copied raw (rawActivation; the caller keeps it); `fused.accumulate`:
 * Y += the result (same sum as a separate add of the two, in the same order).
 */
export function rowConv(
  device: Device, input: Operand, weight: Operand, bias: Operand | undefined, out: Operand, g: ConvGeometry, gradInput: boolean, pixelsPerLane: 4 | 8 = 8,
  fused: { raw?: PooledTexture | undefined; accumulate?: boolean; stats?: Operand | undefined; bn?: BnBackwardEpilogue | undefined; prologue?: InputPrologue | undefined } = {},
): void {
  if (fused.stats && gradInput) throw new Error('rowConv: batchnorm statistics are a forward epilogue');
  if (fused.prologue && gradInput) throw new Error("rowConv: a batchnorm + relu prologue is the forward's (the grad input does not read X)");
  if (fused.bn && !gradInput) throw new Error("rowConv: a batchnorm's backward is a grad-input epilogue");
  const K = g.kh;
  const S = gradInput ? 1 : g.strideH;
  const stride2 = gradInput && g.strideH === 2 && K === 3; // gradInputStride2Source
  const scatter = gradInput && g.strideH === 2 && K === 1;
  // the grid of lanes is over dY's pixels for a stride-2 grad input, else over the output's
  const [c, h, w, m, gridH, gridW] = gradInput ? [g.cout, g.ho, g.wo, g.cin, g.strideH === 2 ? g.ho : g.h, g.strideH === 2 ? g.wo : g.w] : [g.cin, g.h, g.w, g.cout, g.ho, g.wo];
  const raw = fused.raw ?? copyRaw(device, input, c * h * w, g.batch);
  const acc = fused.accumulate === true;
  // 3×3 stride 1: 8 pixels per lane where rows are whole octets (1, 2, 4 or 8 lanes per row)
  const V = pixelsPerLane === 8 && K === 3 && S === 1 && !stride2 && gridW % 8 === 0 ? 2 : 1;
  const st = fused.stats !== undefined;
  const bn = fused.bn ? { mask: fused.bn.mask, affine: fused.bn.gamma !== undefined } : undefined;
  const bnKey = bn ? `${bn.mask}:${bn.affine}` : '-';
  const proC = fused.prologue ? c : 0;
  const proKey = proC ? `pro${proC}` : '-';
  const TM = stride2 ? S2_TM : K === 1 && m > 16 ? TM_1X1 : 16;
  const mPad = Math.ceil(m / TM) * TM;
  // Winograd F(4,3) along rows (policy.conv.winograd): 3×3 stride-1 correlations whose weights fit twice as wide
  const lim = device.limits;
  const cWino = Math.ceil(c / WINO_CHANNELS) * WINO_CHANNELS;
  const wino = device.policy.conv.winograd && K === 3 && S === 1 && !stride2 && !scatter && 2 * cWino * K <= lim.maxTextureDimension2D && Math.ceil((2 * cWino * K * mPad) / 64) <= lim.maxComputeWorkgroupsPerDimension;
  const iters = K === 1 ? Math.ceil(c / ONE_BY_ONE_CHANNELS) : wino ? cWino / WINO_CHANNELS : c;
  const tw = K === 1 ? (iters * ONE_BY_ONE_CHANNELS) / 4 : wino ? 2 * cWino * K : c * K;
  // a 1×1 forward's weights [M, C] already hold its texels in order: copied, not packed
  const rawWeights = K === 1 && !gradInput && c % 4 === 0 && rawFits(device, m * c, 1);
  let wt: PooledTexture;
  if (rawWeights) {
    wt = copyRaw(device, weight, m * c, 1);
  } else {
    wt = device.acquireTexture(tw, mPad, 1);
    const packPipeline = device.pipeline('conv2d rows:packWeight', 'conv2d rows pack (weight)', () => packWeightSource);
    const mode = stride2 ? PackMode.Transposed : gradInput ? PackMode.Rotated : PackMode.Forward;
    const pu = device.uniforms(new UniformWriter().u32(m, c, K, mode, tw, mPad, g.cin, wino ? 1 : 0).bytes());
    device.dispatch(packPipeline, [weight.buffer, wt.view, pu], [Math.ceil((tw * mPad) / 64), 1, 1]);
  }
  const hasBias = bias !== undefined;
  const what = `${K}×${K}, stride ${S}${scatter ? ', scattered ×2' : ''}, ${TM} channels${V > 1 ? `, ${4 * V} px` : ''}${hasBias ? ', +bias' : ''}${rawWeights ? ', raw weights' : ''}${acc ? ', add into' : ''}${st ? ', + bn statistics' : ''}${bn ? ', + bn backward' : ''}${wino ? ', Winograd F(4,3)' : ''}${proC ? ', bn + relu prologue' : ''}`;
  const lanesPerRow = gridW / (4 * V);
  const lanes = g.batch * gridH * lanesPerRow;
  // several blocks of output channels: they run back to back over the same pixels
  const blocks = mPad / TM;
  const channelsFirst = device.policy.conv.rowChannelsFastest && blocks > 1;
  const order = (src: string): string => (channelsFirst ? channelBlocksFastest(src) : src);
  const pipeline = stride2
    ? device.pipeline(`conv2d rows:gradInputStride2:${acc}:${bnKey}:${channelsFirst}`, `conv2d rows (grad input of 3×3 stride 2${acc ? ', add into' : ''}${bn ? ', + bn backward' : ''})`, () => order(gradInputStride2Source(acc, bn)))
    : device.pipeline(`conv2d rows:${TM}:${K}:${S}:${hasBias}:${scatter}:${rawWeights}:${V}:${acc}:${st}:${bnKey}:${wino}:${proKey}:${channelsFirst}`, `conv2d rows (${what})`, () => order(rowConvSource(TM, K, S, hasBias, scatter, rawWeights, V, acc, st, bn, wino, proC)));
  const u = device.uniforms(new UniformWriter().u32(c, h, w / 4, gridH, lanesPerRow, m, lanes, iters).bytes());
  const bindings = [raw.view, wt.view, out.buffer, u];
  if (bias) bindings.push(bias.buffer);
  if (fused.stats) {
    const splits = Math.ceil(lanes / 64) * 8;
    if (fused.stats.size < splits * m * 3) throw new Error(`rowConv: statistics partials hold ${fused.stats.size} floats, need ${splits * m * 3}`);
    bindings.push(fused.stats.buffer, device.uniforms(new UniformWriter().u32(splits, 0, 0, 0).bytes()));
  }
  if (fused.bn) {
    const e = fused.bn;
    const splits = Math.ceil(lanes / 64) * 8;
    if (e.splits !== splits || e.partials.size < splits * m * 2) throw new Error(`rowConv: batchnorm backward partials: ${e.splits} splits of ${e.partials.size} floats, need ${splits} splits (${splits * m * 2} floats)`);
    if (e.x.size !== out.size || (e.mask === 'output' && e.y?.size !== out.size)) throw new Error("rowConv: the batchnorm's tensors do not match dX");
    bindings.push(e.partials.buffer, device.uniforms(new UniformWriter().u32(splits, 0, 0, 0).bytes()), e.x.buffer, e.stats.buffer);
    if (e.mask === 'input' && e.gamma) bindings.push(e.gamma.buffer, e.beta!.buffer);
    if (e.mask === 'output') bindings.push(e.y!.buffer);
  }
  if (fused.prologue) bindings.push(prologueBinding(device, fused.prologue, c, 'rowConv'));
  // adding into Y reads it as well as writing it
  device.dispatch(pipeline, bindings, channelsFirst ? [blocks, Math.ceil(lanes / 64), 1] : [Math.ceil(lanes / 64), blocks, 1], acc ? { read: out.size * 4 } : undefined);
  if (!fused.raw) device.releaseTexture(raw);
  device.releaseTexture(wt);
}

// ------------------------------------------------------ grad weight, 1×1

/**
 * Whether rowGradWeight computes this convolution's weight gradient: 1×1 without
 * padding or 3×3 with padding 1, stride 1 or 2, output rows of whole quads of pixels.
 */
export function rowGradWeightFits(device: AdapterProfile, g: ConvGeometry): boolean {
  const s = g.strideH;
  const k = g.kh;
  if ((k !== 1 && k !== 3) || g.kw !== k || g.padH !== (k - 1) / 2 || g.padW !== g.padH || g.strideW !== s || (s !== 1 && s !== 2)) return false;
  if (g.h !== g.ho * s || g.w !== g.wo * s || g.wo % 4 !== 0) return false;
  // X and dY copied raw
  return rawFits(device, g.cin * g.h * g.w, g.batch) && rawFits(device, g.cout * g.ho * g.wo, g.batch);
}

const GW_TM = 16; // output channels per workgroup
const GW_TC = 8; // input channels per workgroup

// One subgroup per workgroup owns GW_TM × GW_TC weights and one slice of the batch's
// output rows; each lane takes every 8th quad of 4 output pixels of the slice, loads
// the dY texel (4 pixels) of each output channel and the X texel(s) of each input
// channel, and chains the 4 products into each accumulator; subgroupAdd at the end.
function rowGradWeightSource(S: number, Q: number, HO: number): string {
  const decl: string[] = [];
  const body: string[] = ['let r = r0 + i / Q;', 'let xq = i % Q;', 'let n = r / HO;', 'let oy = r % HO;', 'let dq = oy * Q + xq;', `let xt = oy * ${S}u * p.w4 + xq * ${S}u;`];
  for (let k = 0; k < GW_TM; k++) {
    decl.push(`let dp${k} = min(co0 + ${k}u, p.cout - 1u) * HO * Q;`);
    body.push(`let d${k} = ${rawLoad('D', `dp${k} + dq`)};`);
  }
  for (let c = 0; c < GW_TC; c++) {
    decl.push(`let xp${c} = min(ci0 + ${c}u, p.cin - 1u) * p.h * p.w4;`);
    if (S === 1) {
      body.push(`let x${c} = ${rawLoad('X', `xp${c} + xt`)};`);
    } else {
      body.push(`let xa${c} = ${rawLoad('X', `xp${c} + xt`)};`);
      body.push(`let xb${c} = ${rawLoad('X', `xp${c} + xt + 1u`)};`);
      body.push(`let x${c} = vec4<f32>(xa${c}.x, xa${c}.z, xb${c}.x, xb${c}.z);`);
    }
  }
  const out: string[] = [];
  for (let k = 0; k < GW_TM; k++) {
    for (let c = 0; c < GW_TC; c++) {
      decl.push(`var a${k}_${c} = 0.0;`);
      body.push(`a${k}_${c} = fma(d${k}.w, x${c}.w, fma(d${k}.z, x${c}.z, fma(d${k}.y, x${c}.y, fma(d${k}.x, x${c}.x, a${k}_${c}))));`);
      const idx = k * GW_TC + c;
      out.push(
        `{ let s = subgroupAdd(a${k}_${c}); if (sg == ${idx % 8}u && co0 + ${k}u < p.cout && ci0 + ${c}u < p.cin) { part[base + (co0 + ${k}u) * p.cin + ci0 + ${c}u] = s; } }`,
      );
    }
  }
  return /* wgsl */ `enable subgroups;
const Q = ${Q}u; // quads of 4 pixels per output row
const HO = ${HO}u;
struct P { rows: u32, rowsPerSlice: u32, cout: u32, cin: u32, h: u32, w4: u32, coBlocks: u32, _p: u32 }
@group(0) @binding(0) var D: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var X: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) sg: u32) {
  let co0 = (wid.x % p.coBlocks) * ${GW_TM}u;
  let ci0 = (wid.x / p.coBlocks) * ${GW_TC}u;
  let r0 = wid.y * p.rowsPerSlice;
  let quads = (min(p.rows, r0 + p.rowsPerSlice) - r0) * Q;
  ${decl.join('\n  ')}
  for (var i = sg; i < quads; i += 8u) {
    ${body.join('\n    ')}
  }
  let base = wid.y * p.cout * p.cin;
  ${out.join('\n  ')}
}`;
}

// ------------------------------------------------------ grad weight, 3×3

const GW3_TM = 16; // output channels per subgroup: two dY texels, broadcast to every lane

// dW of a 3×3 convolution (padding 1, stride S) as a matmul over the output pixels:
// one subgroup per workgroup owns 16 output channels × 8 input channels (one per
// lane) × 9 taps and one slice of the batch's output rows, walking each row a quad
// of 4 output pixels at a time. Per quad, lanes 0-7 load the dY texels of output
// channels co0 + lane and co0 + 8 + lane (4 pixels each), broadcast to all lanes;
// each lane loads the input texels of its channel under the quad in the 3 input rows
// and forms the 4 input pixels each tap kx multiplies (stride 1: the texel under the
// quad and its neighbours, the left one and the centre carried from the previous
// quad; stride 2: the two texels under the quad and the left one carried), so 9 taps
// × 16 channels take 2 + 3·S texel loads per 576 multiply-adds, 4 chained per write.
// Lanes never reduce: each lane's accumulators are its channel's weights.
function rowGradWeight3x3Source(S: number, Q: number, HO: number, prologueChannels = 0): string {
  const TM = GW3_TM;
  const pro = prologueChannels ? prologueCode(prologueChannels) : undefined;
  // X texels as the kernel reads them: through the batchnorm + relu prologue (the lane's channel ci), or raw
  const xLoad = (t: string): string => (pro ? `act(${rawLoad('X', t)}, pc)` : rawLoad('X', t));
  const decl: string[] = [];
  const rowStart: string[] = ['let n = r / HO;', 'let oy = r % HO;', 'let dA = (coA * HO + oy) * Q;', 'let dB = (coB * HO + oy) * Q;'];
  const body: string[] = [`let da = ${rawLoad('D', 'dA + xq')};`, `let db = ${rawLoad('D', 'dB + xq')};`];
  for (let m = 0; m < TM; m++) for (let c = 0; c < 4; c++) body.push(`let s${m}_${c} = subgroupBroadcast(${m < 8 ? 'da' : 'db'}.${XYZW[c]}, ${m & 7}u);`);
  const carry: string[] = [];
  for (let ky = 0; ky < 3; ky++) {
    decl.push(`var L${ky} = vec4<f32>();`);
    // the input row under output row oy for tap row ky; rows of the padding read as zeros
    rowStart.push(`let iy${ky} = i32(oy * ${S}u) + ${ky - 1}; let ok${ky} = iy${ky} >= 0 && iy${ky} < i32(HO * ${S}u);`);
    rowStart.push(`let xb${ky} = (ci * HO * ${S}u + u32(clamp(iy${ky}, 0, i32(HO * ${S}u) - 1))) * ${Q * S}u;`);
    rowStart.push(`L${ky} = vec4<f32>();`);
    const cols: string[] = [];
    if (S === 1) {
      decl.push(`var C${ky} = vec4<f32>();`);
      rowStart.push(`C${ky} = select(vec4<f32>(), ${xLoad(`xb${ky}`)}, ok${ky});`);
      body.push(`let R${ky} = select(vec4<f32>(), ${xLoad(`xb${ky} + xq + 1u`)}, ok${ky} && xq + 1u < Q);`);
      cols.push(`vec4<f32>(L${ky}.w, C${ky}.x, C${ky}.y, C${ky}.z)`, `C${ky}`, `vec4<f32>(C${ky}.y, C${ky}.z, C${ky}.w, R${ky}.x)`);
      carry.push(`L${ky} = C${ky};`, `C${ky} = R${ky};`);
    } else {
      body.push(`let E${ky} = select(vec4<f32>(), ${xLoad(`xb${ky} + 2u * xq`)}, ok${ky});`);
      body.push(`let F${ky} = select(vec4<f32>(), ${xLoad(`xb${ky} + 2u * xq + 1u`)}, ok${ky});`);
      cols.push(`vec4<f32>(L${ky}.w, E${ky}.y, E${ky}.w, F${ky}.y)`, `vec4<f32>(E${ky}.x, E${ky}.z, F${ky}.x, F${ky}.z)`, `vec4<f32>(E${ky}.y, E${ky}.w, F${ky}.y, F${ky}.w)`);
      carry.push(`L${ky} = F${ky};`);
    }
    for (let kx = 0; kx < 3; kx++) body.push(`let v${ky}_${kx} = ${cols[kx]};`);
  }
  const out: string[] = [];
  for (let m = 0; m < TM; m++) {
    for (let ky = 0; ky < 3; ky++) {
      for (let kx = 0; kx < 3; kx++) {
        const a = `a${m}_${ky}_${kx}`;
        decl.push(`var ${a} = 0.0;`);
        const e = [0, 1, 2, 3].reduce((acc, c) => `fma(s${m}_${c}, v${ky}_${kx}.${XYZW[c]}, ${acc})`, a);
        body.push(`${a} = ${e};`);
        out.push(`if (co0 + ${m}u < p.cout) { part[base + (co0 + ${m}u) * p.cin * 9u + ${ky * 3 + kx}u] = ${a}; }`);
      }
    }
  }
  body.push(...carry);
  return /* wgsl */ `enable subgroups;
const Q = ${Q}u; // quads of 4 pixels per output row
const HO = ${HO}u; // output rows per image
struct P { rows: u32, rowsPerSlice: u32, cout: u32, cin: u32, coBlocks: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var D: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var X: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
${(pro?.bindings ?? []).map((b, i) => `@group(0) @binding(${4 + i}) ${b}`).join('\n')}
${pro?.fns ?? ''}
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) sg: u32) {
  let co0 = (wid.x % p.coBlocks) * ${TM}u;
  let ci0 = (wid.x / p.coBlocks) * 8u;
  // lanes past the channels repeat the last one and store nothing
  let ci = min(ci0 + sg, p.cin - 1u);
  ${pro ? pro.coef('ci', '') : ''}
  let coA = min(co0 + sg, p.cout - 1u);
  let coB = min(co0 + 8u + sg, p.cout - 1u);
  let r0 = wid.y * p.rowsPerSlice;
  let r1 = min(p.rows, r0 + p.rowsPerSlice);
  ${decl.join('\n  ')}
  for (var r = r0; r < r1; r++) {
    ${rowStart.join('\n    ')}
    for (var xq = 0u; xq < Q; xq++) {
      ${body.join('\n      ')}
    }
  }
  if (ci0 + sg < p.cin) {
    let base = wid.y * p.cout * p.cin * 9u + (ci0 + sg) * 9u;
    ${out.join('\n    ')}
  }
}`;
}

/**
 * Records the weight gradient of a 1×1 or 3×3 convolution (rowGradWeightFits) as
 * `slices` partial sums over rows of the batch's output (`rowsPerSlice` rows each)
 * into `parts` ([slices, Cout, Cin, KH, KW]), reading dY and X unpacked.
 */
export function rowGradWeight(
  device: Device, dy: Operand, x: Operand, parts: Operand, g: ConvGeometry, slices: number, rowsPerSlice: number,
  raw: { dy?: PooledTexture | undefined; x?: PooledTexture | undefined } = {},
  prologue?: InputPrologue,
): void {
  const S = g.strideH;
  if (prologue && g.kh !== 3) throw new Error('rowGradWeight: a batchnorm + relu prologue is for 3×3 weight gradients');
  const proBinding = prologue ? prologueBinding(device, prologue, g.cin, 'rowGradWeight') : undefined;
  // dY and X copied raw by the caller where other kernels share the copies (it releases them)
  const dyt = raw.dy ?? copyRaw(device, dy, g.cout * g.ho * g.wo, g.batch);
  const xt = raw.x ?? copyRaw(device, x, g.cin * g.h * g.w, g.batch);
  const Q = g.wo / 4;
  if (g.kh === 3) {
    const proC = prologue ? g.cin : 0;
    const pipeline = device.pipeline(`conv2d rows:gradWeight3x3:${S}:${Q}:${g.ho}:${proC ? `pro${proC}` : '-'}`, `conv2d rows grad weight (3×3, stride ${S}${proC ? ', bn + relu prologue' : ''})`, () =>
      rowGradWeight3x3Source(S, Q, g.ho, proC),
    );
    const coBlocks = Math.ceil(g.cout / GW3_TM);
    const u = device.uniforms(new UniformWriter().u32(g.batch * g.ho, rowsPerSlice, g.cout, g.cin, coBlocks, 0, 0, 0).bytes());
    device.dispatch(pipeline, [dyt.view, xt.view, parts.buffer, u, ...(proBinding ? [proBinding] : [])], [coBlocks * Math.ceil(g.cin / 8), slices, 1]);
  } else {
    const pipeline = device.pipeline(`conv2d rows:gradWeight:${S}:${Q}:${g.ho}`, `conv2d rows grad weight (1×1, stride ${S})`, () => rowGradWeightSource(S, Q, g.ho));
    const coBlocks = Math.ceil(g.cout / GW_TM);
    const u = device.uniforms(new UniformWriter().u32(g.batch * g.ho, rowsPerSlice, g.cout, g.cin, g.h, g.w / 4, coBlocks, 0).bytes());
    device.dispatch(pipeline, [dyt.view, xt.view, parts.buffer, u], [coBlocks * Math.ceil(g.cin / GW_TC), slices, 1]);
  }
  if (!raw.dy) device.releaseTexture(dyt);
  if (!raw.x) device.releaseTexture(xt);
}
