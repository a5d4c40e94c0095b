// The 3×3 row conv of a ResNet stage (forward and weight gradient) with and without the
// batchnorm + relu input prologue (policy.fusion.bnPrologue), each timed alone: what the
// prologue costs the kernels that read X, against what the batchnorm apply pass it replaces costs.
//   node --import tsx bench/experiments/prologue-conv.ts [--shape 128,16,32] [--reps 10] [--rounds 3]
import { createDevice } from '../../gpu/device.ts';
import { aloneArgs, timeAlone } from './alone.ts';
import { defaultKernelPolicy } from '../../gpu/policy.ts';
import { rowConv, rowGradWeight } from '../../kernels/conv2dRows.ts';
import { bnApply } from '../../kernels/batchnorm.ts';
import { randn, tensor, empty } from '../../engine/tensor.ts';

const { batch, c, hw, reps, rounds } = aloneArgs();
const device = await createDevice({ policy: defaultKernelPolicy() });
const g = { batch, cin: c, h: hw, w: hw, cout: c, kh: 3, kw: 3, ho: hw, wo: hw, strideH: 1, strideW: 1, padH: 1, padW: 1 };
const x = randn(device, [batch, c, hw, hw], { seed: 1 });
const dy = randn(device, [batch, c, hw, hw], { seed: 2 });
const w = randn(device, [c, c, 3, 3], { seed: 3 });
const y = empty(device, [batch, c, hw, hw]);
const stats = tensor(device, [...Array.from({ length: c }, () => 0.1), ...Array.from({ length: c }, () => 1.3)], [2 * c]);
const gamma = tensor(device, Array.from({ length: c }, () => 1), [c]);
const beta = tensor(device, Array.from({ length: c }, () => 0.1), [c]);
const parts = empty(device, [64, c * c * 9]);
const coef = tensor(device, Array.from({ length: c }, () => [0.1, 1.3, 0.1, 0]).flat(), [4 * c]);
const pro = { coef };
const cases: [string, () => void][] = [
  ['forward', () => rowConv(device, x, w, undefined, y, g, false, 8)],
  ['forward + prologue', () => rowConv(device, x, w, undefined, y, g, false, 8, { prologue: pro })],
  ['grad weight', () => rowGradWeight(device, dy, x, parts, g, 16, (batch * hw) / 16)],
  ['grad weight + prologue', () => rowGradWeight(device, dy, x, parts, g, 16, (batch * hw) / 16, {}, pro)],
  ['batchnorm + relu apply', () => bnApply(device, x, stats, y, { batch, channels: c, plane: hw * hw }, { affine: true, relu: true, residual: false }, gamma, beta)],
];
await timeAlone(device, `3×3 conv ${batch}×${c}×${hw}×${hw}`, cases, reps, rounds);
device.destroy();
