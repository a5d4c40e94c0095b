// Which kernel computes each part of a convolution (convGeometry.ts: ConvKernel),
// decided in one place from the adapter and the kernel policy (gpu/policy.ts): the
// engine's conv op plans once and hands the plan to the dispatchers in conv2d.ts,
// conv2dTexture.ts and conv2dRows.ts, which follow it. Pure: tests plan for adapters
// they do not have (test/plans.test.ts).
import type { AdapterProfile } from '../gpu/device.ts';
import type { ConvGeometry, ConvKernel, ConvPlan } from './convGeometry.ts';
import { gradWeightSplits } from './conv2d.ts';
import { rowConvFits, rowGradWeightFits } from './conv2dRows.ts';
import { useTextureConv, useTextureConvGradInput } from './conv2dTexture.ts';
import { planLargeConv } from './conv2dLarge.ts';

export type { ConvKernel, ConvPlan };

export function planConv(p: AdapterProfile, g: ConvGeometry): ConvPlan {
  p.policy.trace?.conv.push({ ...g });
  const texture = useTextureConv(p, g);
  const rows = p.policy.conv.rows;
  const forward: ConvKernel = !texture ? 'buffer' : rows && rowConvFits(p, g, false) ? 'rows' : 'texture';
  const gradInput: ConvKernel = !useTextureConvGradInput(p, g) ? 'buffer' : rows && rowConvFits(p, g, true) ? 'rows' : 'texture';
  const gradWeight: ConvKernel = !texture ? 'buffer' : rows && rowGradWeightFits(p, g) ? 'rows' : 'texture';
  const splits = gradWeightSplits(g, p).splits;
  // GPUs: the buffer GEMMs that fill the GPU on the large tiles (or every part, forced)
  const tiles = texture ? {} : planLargeConv(p, g, splits);
  return {
    forward: tiles.forward ? 'large' : forward,
    gradInput: tiles.gradInput ? 'large' : gradInput,
    gradWeight: tiles.gradWeight ? 'large' : gradWeight,
    keepsPackedInput: forward === 'texture' && gradWeight === 'texture',
    sharesPackedGradOutput: gradInput === 'texture' && gradWeight === 'texture',
    gradWeightSplits: splits,
    ...(Object.keys(tiles).length ? { tiles } : {}),
  };
}
