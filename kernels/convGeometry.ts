// A convolution's shape, and which kernel computes each of its parts: the types the
// conv kernels (conv2d.ts, conv2dTexture.ts, conv2dRows.ts) and their planner
// (convPlan.ts) share, in a file of their own so the kernels need not import each other.
import type { GemmTile } from '../gpu/policy.ts';
import { UniformWriter } from './common.ts';

export interface ConvGeometry {
  batch: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  ho: number;
  wo: number;
  strideH: number;
  strideW: number;
  padH: number;
  padW: number;
}

/**
 *   buffer   implicit-GEMM kernels over storage buffers (conv2d.ts): GPUs
 *   texture  operands repacked into storage textures, weights shared across an 8-lane
 *            subgroup (conv2dTexture.ts): software adapters with subgroups of 8
 *   rows     NCHW read through a copied texture, lanes along output rows
 *            (conv2dRows.ts): the texture path's kernel where the geometry fits
 *   large    the buffer kernels' GEMMs on the large-tile family (conv2dLarge.ts): GPUs,
 *            where the GEMM fills the GPU (ConvPlan.tiles names the tile)
 */
export type ConvKernel = 'buffer' | 'texture' | 'rows' | 'large';

/** The large tile of each part that takes one (kernels/conv2dLarge.ts). */
export interface ConvTiles {
  forward?: GemmTile;
  gradInput?: GemmTile;
  gradWeight?: GemmTile;
}

/** What planConv (convPlan.ts) decided for one convolution. */
export interface ConvPlan {
  forward: ConvKernel;
  gradInput: ConvKernel;
  gradWeight: ConvKernel;
  /** the forward keeps X packed for the repacked weight gradient (freed with the graph) */
  keepsPackedInput: boolean;
  /** dY is packed once for both gradients (neither takes a row kernel, which read it unpacked) */
  sharesPackedGradOutput: boolean;
  /** partial weight gradients summed afterwards (split-K over the batch's pixels) */
  gradWeightSplits: number;
  /** the tiles of the parts planned 'large' */
  tiles?: ConvTiles;
  /** fusion (policy.fusion.shareRaw): the row forward keeps its raw copy of X for the row weight gradient (freed with the graph) */
  keepsRawInput: boolean;
  /** fusion (policy.fusion.shareRaw): dY is copied raw once for both row gradients */
  sharesRawGradOutput: boolean;
  /** fusion (policy.fusion.addInto): the grad-input kernel can add into an existing gradient instead of writing a new one */
  gradInputAccumulates: boolean;
  /** fusion (policy.fusion.bnStats): the forward can write batchnorm statistics partials of its output (statisticsSplits per channel) */
  forwardStatistics: boolean;
  statisticsSplits: number;
  /** fusion (policy.fusion.bnBackward): the grad-input kernel can fold in the backward sums of a batchnorm whose output X is (gradInputSplits per channel) */
  gradInputBatchNorm: boolean;
  gradInputSplits: number;
  /**
   * fusion (policy.fusion.bnPrologue): where X is a training batchnorm + relu's output, the forward and weight
   * gradient read the batchnorm's input and apply it as they load X (kernels/conv2dRows.ts InputPrologue)
   */
  inputPrologue: boolean;
}

/**
 * The uniform block every buffer conv kernel (conv2d.ts, conv2dLarge.ts) reads: the geometry,
 * the GEMM sizes and a K chunk, 20 × u32 (5 vec4 rows). Slot 15 is the one kernel-specific
 * field, named by `slot15` in the WGSL: conv2d.ts's `zero` (always 0: an opaque loop bound),
 * conv2dLarge.ts's `coutPad` (its grad input's padded output channels).
 */
export function convParamsWgsl(slot15: string): string {
  return /* wgsl */ `
struct Params {
  batch: u32, cin: u32, h: u32, w: u32,
  cout: u32, ho: u32, wo: u32, M: u32,
  N: u32, K: u32, strideH: u32, strideW: u32,
  padH: u32, padW: u32, kChunk: u32, ${slot15}: u32,
  kh: u32, kw: u32, _p0: u32, _p1: u32,
}`;
}

/** The values of convParamsWgsl's block. */
export function convParams(g: ConvGeometry, M: number, N: number, K: number, kChunk = 0, slot15 = 0): Uint8Array {
  return new UniformWriter()
    .u32(g.batch, g.cin, g.h, g.w, g.cout, g.ho, g.wo, M, N, K, g.strideH, g.strideW, g.padH, g.padW, kChunk, slot15)
    .u32(g.kh, g.kw, 0, 0)
    .bytes();
}
