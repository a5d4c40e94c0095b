// Which kernel variants the kernels may choose, as data on the device (Device.policy):
// tests and the bench force a path or a block by giving a device another policy,
// instead of flipping module globals. The defaults are what production runs; the
// planners in kernels/ read it together with the adapter (software or not, subgroups).
import { fileURLToPath } from 'node:url';

/** A matmul kernel: the tiled GPU kernel, a direct one of tm × tn per thread, or the texture one (kernels/matmul.ts). */
export type MatmulConfig =
  | { kind: 'tiled' }
  | { kind: 'direct'; tm: number; tn: number; wx: number; wy: number }
  | { kind: 'texture' }
  | { kind: 'large'; tile: GemmTile }
  /** tensor cores through Dawn's subgroup matrices, f16 operands, f32 result (kernels/matmulSubgroupMatrix.ts) */
  | { kind: 'subgroupMatrix' };

/** A tile of the large GEMM family (kernels/gemmLarge.ts): BM×BN per workgroup, TM×TN per thread, K slices of BK, optionally double-buffered. */
export interface GemmTile {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
  double: boolean;
}

/** Output channels × input-channel quads × kernel rows per lane of the repacked 3×3 weight gradient (kernels/conv2dTexture.ts). */
export interface GradWeightBlock {
  tm: number;
  cq: number;
  kr: number;
}

export interface KernelPolicy {
  conv: {
    /** 'auto': the texture path where usable (software adapter, subgroups of 8); or force one */
    path: 'auto' | 'texture' | 'buffer' | 'large';
    /** the large-tile kernels' tile (kernels/conv2dLarge.ts) for every part, or the planner's choice */
    tile?: GemmTile;
    /** per conv part's shape class, what the autotuner found fastest on this adapter (null: the 64-wide buffer kernel) */
    tuning?: Map<string, GemmTile | null> | null;
    /** the texture path's row kernels (kernels/conv2dRows.ts) where they fit */
    rows: boolean;
    /** output pixels per lane of the 3×3 stride-1 row kernel: 8 where rows are whole octets, or always 4 */
    rowPixels: 4 | 8;
    /**
     * the 3×3 stride-1 row kernels (forward, grad input) by Winograd's F(4,3) along each row: 6 multiply-adds per tile of
     * 4 pixels and filter row instead of 12 (kernels/conv2dRows.ts); f32 rounding differs from the direct sums
     */
    winograd: boolean;
    /** the row kernels' grid with the blocks of output channels fastest, so the blocks that read the same pixels run back to back */
    rowChannelsFastest: boolean;
    /** rows × columns per lane of the repacked correlation */
    tm: number;
    tn: number;
    /** the repacked weight gradient's block (default 16 (or 8) channels × 1 quad × 1 row) */
    wgrad?: GradWeightBlock;
    wgradSlots: number;
    /**
     * texel bytes of dY and X rows per slice of the texture weight gradients' split-K: every block of a slice reads
     * them, so a core's L2; each slice costs a partial dW written and summed again, so no smaller (kernels/conv2dTexture.ts)
     */
    wgradSliceBytes: number;
    /** the buffer kernels' loops unrolled: 'auto' = except on software adapters, where compile time dominates */
    unroll: 'auto' | boolean;
  };
  matmul: {
    /** one kernel for every matmul (tests, benchmarks), or null = the planner's choice */
    force: MatmulConfig | null;
    /** per shape class, what the autotuner found fastest on this adapter (kernels/autotune.ts, the tuning file) */
    tuning: Map<string, MatmulConfig> | null;
  };
  batchnorm: {
    /** the layouts written for CPU rasterisers where the adapter is one; off checks the GPU layouts on lavapipe */
    cpuLayouts: boolean;
  };
  /** operands of the large-tile GEMMs (matmul, conv): 'f16' casts them to f16 (shader-f16) and accumulates in f32; f32 elsewhere */
  precision: 'f32' | 'f16';
  /** the training session times its model's kernel candidates before its first step: 'auto' = on GPUs, not on software adapters */
  autotune: 'auto' | 'on' | 'off';
  /** the autotuner's cache, per adapter (kernels/autotune.ts) */
  tuningFile: string;
  /** when set, the planners record the matmul and conv shapes they plan (the autotuner's view of a model) */
  trace?: KernelTrace;
  /** fusions that save passes over activation memory (issue 20); each has its unfused form beside it */
  fusion: FusionPolicy;
}

/** Which fusions the planners may use; all on in production, all off in unfusedPolicy(). */
export interface FusionPolicy {
  /** a gradient that flows into a tensor from two ops is accumulated by the second one's kernel ("add into") instead of a separate add */
  addInto: boolean;
  /** the row kernels copy an activation to a texture once for all that read it: X from the forward to the weight gradient, dY for both gradients */
  shareRaw: boolean;
  /** batchnorm + relu's backward masks dy by the output recomputed from x (the same bits) instead of reading the output back */
  reluMask: boolean;
  /** a convolution followed by a training batchnorm writes the batch statistics' partial sums in its epilogue; the batchnorm only merges them */
  bnStats: boolean;
  /** the conv grad input that completes a batchnorm's dY masks it by the relu and writes the batchnorm's backward sums in its epilogue */
  bnBackward: boolean;
  /**
   * a training batchnorm merges its statistics partials in the normalise kernel, and its backward sums' partials in the
   * grad-input kernel, instead of a merge dispatch before each (f32 rounding: the same sums in another order)
   */
  bnMerge: boolean;
  /**
   * a training batchnorm + relu whose output only 3×3 row convolutions read leaves it unwritten: they load its
   * input through the batchnorm and relu instead (kernels/conv2dRows.ts InputPrologue); written when anything else reads it
   */
  bnPrologue: boolean;
  /**
   * a batchnorm grad input that is a conv's dY (both of whose gradients are row kernels) writes it straight into the
   * raw texture they read (kernels/rawTexture.ts) instead of a buffer that is then copied; the buffer is written only
   * when something else reads it
   */
  rawGrad: boolean;
}

/** The shapes planned while a trace is set (kernels/matmul.ts's chooseConfig, kernels/convPlan.ts). */
export interface KernelTrace {
  matmul: { transA: boolean; transB: boolean; M: number; N: number; K: number }[];
  conv: {
    batch: number; cin: number; h: number; w: number; cout: number; kh: number; kw: number;
    ho: number; wo: number; strideH: number; strideW: number; padH: number; padW: number;
  }[];
}

/** The autotuner's cache at the repository root (per adapter label, per shape class). */
export const KERNEL_TUNING_FILE = fileURLToPath(new URL('../.cache/kernel-tuning.json', import.meta.url));

/** What production runs (the defaults measured best on lavapipe; GPUs take the buffer kernels). */
export function defaultKernelPolicy(): KernelPolicy {
  return {
    conv: { path: 'auto', rows: true, rowPixels: 8, winograd: false, rowChannelsFastest: true, tm: 16, tn: 4, wgradSlots: 4, wgradSliceBytes: 1 << 20, unroll: 'auto' },
    matmul: { force: null, tuning: null },
    batchnorm: { cpuLayouts: true },
    precision: 'f32',
    autotune: 'auto',
    tuningFile: KERNEL_TUNING_FILE,
    // wgradSliceBytes 1 MiB: Zen 4's L2, as fast as 256 KiB or faster with a quarter of the partials (BENCHMARKS.md
    // "Fewer split-K slices"); bnBackward off: on lavapipe its epilogue costs the grad-input row kernel more than the batchnorm pass it
    // saves (ResNet-20/56 steps 1.05x faster without it, BENCHMARKS.md "Polling"); rawGrad off: llvmpipe's texture
    // stores cost ~3x a buffer store and more than the copy they save (steps 1.06-1.07x faster without it,
    // BENCHMARKS.md "Fusion"); allFusionsPolicy() has both
    fusion: { addInto: true, shareRaw: true, reluMask: true, bnStats: true, bnBackward: false, bnMerge: true, bnPrologue: true, rawGrad: false },
  };
}

/** Every fusion on, bnBackward and rawGrad included: the fused engine as a whole, for its tests and the traffic count. */
export function allFusionsPolicy(): KernelPolicy {
  const p = defaultKernelPolicy();
  p.fusion = { addInto: true, shareRaw: true, reluMask: true, bnStats: true, bnBackward: true, bnMerge: true, bnPrologue: true, rawGrad: true };
  return p;
}

/** The production policy with every fusion off: the reference the fused engine is tested and benchmarked against. */
export function unfusedPolicy(): KernelPolicy {
  const p = defaultKernelPolicy();
  p.fusion = { addInto: false, shareRaw: false, reluMask: false, bnStats: false, bnBackward: false, bnMerge: false, bnPrologue: false, rawGrad: false };
  return p;
}
