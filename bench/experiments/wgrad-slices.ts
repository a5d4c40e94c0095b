// The texture weight gradient's split-K on this adapter: how many slices of the batch's output rows it sums
// separately (kernels/conv2dTexture.ts gradWeightSlicesTexture, sized so a slice's dY and X rows fit a core's L2)
// against fewer, larger slices, whose partial sums are fewer bytes to write and to sum. The row weight gradient
// and its split-K sum timed together over a ResNet stage's 3×3 conv, at several slice sizes.
//   node --import tsx bench/experiments/wgrad-slices.ts [--shape 128,64,8] [--reps 10] [--rounds 3] [--kib 256,512,1024,4096]
import { createDevice } from '../../gpu/device.ts';
import { aloneArgs, timeAlone } from './alone.ts';
import { defaultKernelPolicy } from '../../gpu/policy.ts';
import { conv2dGradWeight } from '../../kernels/conv2d.ts';
import { planConv } from '../../kernels/convPlan.ts';
import { gradWeightSlicesTexture } from '../../kernels/conv2dTexture.ts';
import { empty, randn } from '../../engine/tensor.ts';

const { batch, c, hw, reps, rounds } = aloneArgs();
const argv = process.argv.slice(2);
const kib = (argv.includes('--kib') ? argv[argv.indexOf('--kib') + 1]! : '256,512,1024,4096').split(',').map(Number);
const device = await createDevice({ policy: defaultKernelPolicy() });
const g = { batch, cin: c, h: hw, w: hw, cout: c, kh: 3, kw: 3, ho: hw, wo: hw, strideH: 1, strideW: 1, padH: 1, padW: 1 };
const x = randn(device, [batch, c, hw, hw], { seed: 1 });
const dy = randn(device, [batch, c, hw, hw], { seed: 2 });
const dw = empty(device, [c, c, 3, 3]);
const cases: [string, () => void][] = kib.map((k) => {
  // the policy read at dispatch time: set it for this case's calls
  const set = (): void => void (device.policy.conv.wgradSliceBytes = k << 10);
  set();
  const plan = planConv(device, g);
  const { slices } = gradWeightSlicesTexture(device, g);
  const scratch = empty(device, [Math.max(1, slices), c * c * 9]);
  return [`${k} KiB: ${slices} slices (${((2 * slices * c * c * 9 * 4) / 1e6).toFixed(2)} MB partials)`, () => {
    set();
    conv2dGradWeight(device, dy, x, dw, g, plan, scratch);
  }] as [string, () => void];
});
await timeAlone(device, `3×3 weight gradient + split-K sum ${batch}×${c}×${hw}×${hw}`, cases, reps, rounds);
device.destroy();
