// policy.fusion.rawGrad's trade on this adapter: a batchnorm grad input storing dx as a raw
// texture (kernels/rawTexture.ts) against storing it to a buffer, which the conv's backward
// then copies into that texture (copyBufferToTexture). Each case timed alone over a ResNet
// stage's shape, repeated; ms per call, the median of the rounds.
//   node --import tsx bench/experiments/raw-grad.ts [--shape 128,16,32] [--reps 10] [--rounds 3]
import { createDevice } from '../../gpu/device.ts';
import { aloneArgs, timeAlone } from './alone.ts';
import { defaultKernelPolicy } from '../../gpu/policy.ts';
import { bnGradInput } from '../../kernels/batchnorm.ts';
import { acquireRaw } from '../../kernels/rawTexture.ts';
import { empty, randn, tensor } from '../../engine/tensor.ts';

const { batch, c, hw, reps, rounds } = aloneArgs();
const device = await createDevice({ policy: defaultKernelPolicy() });
const g = { batch, channels: c, plane: hw * hw };
const shape = [batch, c, hw, hw];
const [x, dy, y] = [1, 2, 3].map((seed) => randn(device, shape, { seed })) as [ReturnType<typeof randn>, ReturnType<typeof randn>, ReturnType<typeof randn>];
const dx = empty(device, shape);
const dres = empty(device, shape);
const perChannel = (v: number, n = c): ReturnType<typeof tensor> => tensor(device, new Array<number>(n).fill(v), [n]);
const stats = tensor(device, [...new Array<number>(c).fill(0.1), ...new Array<number>(c).fill(1.3)], [2 * c]);
const sums = perChannel(0.3, 2 * c);
const gamma = perChannel(1);
const beta = perChannel(0.1);
const raw = acquireRaw(device, c * hw * hw, batch);
const relu = { affine: true, relu: true, residual: false };
const residual = { affine: true, relu: true, residual: true };
const cases: [string, () => void][] = [
  ['bn + relu grad input → buffer', () => bnGradInput(device, x, dy, stats, g, relu, true, dx, { sums, gamma, maskBeta: beta, maskFromInput: true })],
  ['bn + relu grad input → raw texture', () => bnGradInput(device, x, dy, stats, g, relu, true, { raw }, { sums, gamma, maskBeta: beta, maskFromInput: true })],
  ['bn + residual + relu → buffer', () => bnGradInput(device, x, dy, stats, g, residual, true, dx, { sums, gamma, y, dres })],
  ['bn + residual + relu → raw texture', () => bnGradInput(device, x, dy, stats, g, residual, true, { raw }, { sums, gamma, y, dres })],
  ['copy buffer → raw texture', () => device.copyToTexture(dx.buffer, raw, 16, (c * hw * hw) / 64, batch)],
];
await timeAlone(device, `batchnorm grad input ${batch}×${c}×${hw}×${hw}`, cases, reps, rounds);
device.destroy();
