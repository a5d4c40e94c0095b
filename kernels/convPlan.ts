// Which kernel computes each part of a convolution (convGeometry.ts: ConvKernel),
// decided in one place from the adapter and the kernel policy (gpu/policy.ts): the
// engine's conv op plans once and hands the plan to the dispatchers in conv2d.ts,
// conv2dTexture.ts and conv2dRows.ts, which follow it. Pure: tests plan for adapters
// they do not have (test/plans.test.ts).
import type { AdapterProfile } from '../gpu/device.ts';
import type { ConvGeometry, ConvKernel, ConvPlan } from './convGeometry.ts';
import { gradWeightSplits } from './conv2d.ts';
import { prologueFits, rowConvFits, rowConvStatsSplits, rowGradWeightFits } from './conv2dRows.ts';
import { textureConvSupported, useTextureConv, useTextureConvGradInput } from './conv2dTexture.ts';
import { isSoftwareAdapter } from './common.ts';
import { planLargeConv } from './conv2dLarge.ts';

export type { ConvKernel, ConvPlan };

/**
 * Whether convolutions on this adapter may load their input through a batchnorm + relu prologue
 * (plan.inputPrologue, for the 3×3 row kernels of software adapters, whose pooled buffers can be bound
 * as uniforms: gpu/device.ts): what a training batchnorm + relu asks before it leaves its output
 * unwritten for them (engine/ops/batchnorm.ts); elsewhere it writes it.
 */
export function convPrologues(p: AdapterProfile): boolean {
  const path = p.policy.conv.path;
  return p.policy.fusion.bnPrologue && p.policy.conv.rows && isSoftwareAdapter(p) && textureConvSupported(p) && (path === 'texture' || path === 'auto');
}

/**
 * `half`: the activations are f16 (half-precision training). Only the large-tile
 * kernels read and write f16, so on GPUs every part takes them (the tile that fits,
 * else the smallest); on software adapters the usual plan stands and the engine's
 * conv op runs it on f32 copies (engine/ops/conv.ts).
 */
export function planConv(p: AdapterProfile, g: ConvGeometry, half = false): ConvPlan {
  p.policy.trace?.conv.push({ ...g });
  const texture = useTextureConv(p, g);
  const rows = p.policy.conv.rows;
  const forward: ConvKernel = !texture ? 'buffer' : rows && rowConvFits(p, g, false) ? 'rows' : 'texture';
  const gradInput: ConvKernel = !useTextureConvGradInput(p, g) ? 'buffer' : rows && rowConvFits(p, g, true) ? 'rows' : 'texture';
  const gradWeight: ConvKernel = !texture ? 'buffer' : rows && rowGradWeightFits(p, g) ? 'rows' : 'texture';
  const splits = gradWeightSplits(g, p).splits;
  // GPUs: the buffer GEMMs that fill the GPU on the large tiles (or every part, forced)
  const tiles = texture ? {} : planLargeConv(p, g, splits, half);
  return {
    forward: tiles.forward ? 'large' : forward,
    gradInput: tiles.gradInput ? 'large' : gradInput,
    gradWeight: tiles.gradWeight ? 'large' : gradWeight,
    keepsPackedInput: forward === 'texture' && gradWeight === 'texture',
    sharesPackedGradOutput: gradInput === 'texture' && gradWeight === 'texture',
    gradWeightSplits: splits,
    // fusions (issue 20): the row kernels share their raw copies
    keepsRawInput: p.policy.fusion.shareRaw && forward === 'rows' && gradWeight === 'rows',
    sharesRawGradOutput: p.policy.fusion.shareRaw && gradInput === 'rows' && gradWeight === 'rows',
    // every grad-input kernel but the texture one can add into dX (GPUs: the buffer and large-tile ones)
    gradInputAccumulates: p.policy.fusion.addInto && (gradInput === 'rows' || gradInput === 'buffer'),
    forwardStatistics: p.policy.fusion.bnStats && forward === 'rows',
    statisticsSplits: p.policy.fusion.bnStats && forward === 'rows' ? rowConvStatsSplits(p, g) : 0,
    gradInputBatchNorm: p.policy.fusion.bnBackward && gradInput === 'rows',
    gradInputSplits: p.policy.fusion.bnBackward && gradInput === 'rows' ? rowConvStatsSplits(p, g, true) : 0,
    // the row forward and the 3×3 row weight gradient (the kernels that read X) load X through the prologue
    inputPrologue: convPrologues(p) && forward === 'rows' && gradWeight === 'rows' && g.kh === 3 && prologueFits(p, g.cin),
    ...(Object.keys(tiles).length ? { tiles } : {}),
  };
}
