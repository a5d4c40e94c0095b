// The row kernels' grid order (policy.conv.rowChannelsFastest): the blocks of 16 output channels that
// read the same input pixels dispatched back to back (x = channel block) against the lanes' groups
// first (x = pixels, the order before 2026-12-07). Forward and grad input of a ResNet stage's 3×3 conv
// and of its stride-2 entry, each timed alone in both orders; ms per call, the median of the rounds.
// Only layers with more than 16 output channels (of the kernel's output) have more than one block.
//   node --import tsx bench/experiments/row-order.ts [--shape 128,64,8] [--reps 10] [--rounds 3]
import { createDevice } from '../../gpu/device.ts';
import { aloneArgs, timeAlone } from './alone.ts';
import { defaultKernelPolicy } from '../../gpu/policy.ts';
import { rowConv } from '../../kernels/conv2dRows.ts';
import { empty, randn } from '../../engine/tensor.ts';

const { batch, c, hw, reps, rounds } = aloneArgs();
const device = await createDevice({ policy: defaultKernelPolicy() });
const same = { batch, cin: c, h: hw, w: hw, cout: c, kh: 3, kw: 3, ho: hw, wo: hw, strideH: 1, strideW: 1, padH: 1, padW: 1 };
// the stage's entry: c/2 channels at twice the side, stride 2
const entry = { ...same, cin: c / 2, h: 2 * hw, w: 2 * hw, strideH: 2, strideW: 2 };
const x = randn(device, [batch, c, hw, hw], { seed: 1 });
const xe = randn(device, [batch, c / 2, 2 * hw, 2 * hw], { seed: 2 });
const w = randn(device, [c, c, 3, 3], { seed: 3 });
const we = randn(device, [c, c / 2, 3, 3], { seed: 4 });
const y = empty(device, [batch, c, hw, hw]);
const dxe = empty(device, [batch, c / 2, 2 * hw, 2 * hw]);
const inOrder = (channelsFastest: boolean, f: () => void) => (): void => {
  device.policy.conv.rowChannelsFastest = channelsFastest;
  f();
};
const cases: [string, () => void][] = [];
for (const [name, f] of [
  ['forward', () => rowConv(device, x, w, undefined, y, same, false, 8)],
  ['grad input', () => rowConv(device, y, w, undefined, x, same, true, 8)],
  ['entry forward (stride 2)', () => rowConv(device, xe, we, undefined, y, entry, false, 8)],
  ['entry grad input (stride 2)', () => rowConv(device, y, we, undefined, dxe, entry, true, 8)],
] as [string, () => void][]) {
  cases.push([`${name}, pixels first`, inOrder(false, f)], [`${name}, channel blocks first`, inOrder(true, f)]);
}
await timeAlone(device, `3×3 row convs ${batch}×${c}×${hw}×${hw}`, cases, reps, rounds);
device.destroy();
