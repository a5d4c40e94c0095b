// Where a training step's GPU time goes, kernel by kernel: one warm-up step of a
// CIFAR ResNet, then one step with every dispatch timed in its own compute pass
// (Device.profile). Totals per kernel label, largest first.
//
//   node --import tsx bench/profile.ts [--depth 20] [--batch 128] [--top 25]
//          [--conv tm,tn] [--wgrad tm,cq,kr] [--wgrad-slots n]   (texture-path blocks, kernels/conv2dTexture.ts)
//
// Passes of their own add a little per dispatch, so the sum is a bit above the
// step's time in bench/main.ts; the shares are what this is for.
import { createDevice } from '../gpu/device.ts';
import { softmaxCrossEntropy } from '../engine/ops/loss.ts';
import { SGD } from '../engine/optim.ts';
import { randn, tensor, tidy } from '../engine/tensor.ts';
import { defaultKernelPolicy } from '../gpu/policy.ts';
import { resnet } from '../models/resnet.ts';


const args = process.argv.slice(2);
const arg = (name: string, d: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const depth = arg('--depth', 20);
const batch = arg('--batch', 128);
const top = arg('--top', 25);
const list = (name: string): number[] | null => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1]!.split(',').map(Number) : null;
};
// the texture path's blocks for experiments, as the device's kernel policy (gpu/policy.ts)
const policy = defaultKernelPolicy();
const conv = list('--conv');
if (conv) [policy.conv.tm, policy.conv.tn] = conv as [number, number];
const wgrad = list('--wgrad');
if (wgrad) policy.conv.wgrad = { tm: wgrad[0]!, cq: wgrad[1]!, kr: wgrad[2]! };
policy.conv.wgradSlots = arg('--wgrad-slots', policy.conv.wgradSlots);

const device = await createDevice({ dawnFlags: ['disable-dawn-features=timestamp_quantization'], policy });
const model = resnet(device, { depth, numClasses: 10, shortcut: 'A' });
model.train(true);
const opt = new SGD({ params: model.parameters(), lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });
const x = randn(device, [batch, 3, 32, 32], { seed: 1 });
const labels = tensor(device, Array.from({ length: batch }, (_, i) => i % 10), [batch], 'i32');
const step = (): void => {
  tidy(() => softmaxCrossEntropy(model.forward(x), labels).backward());
  opt.step();
  opt.zeroGrad();
  device.flush();
};
step();
await device.sync();
const rows = await device.profile(step);
const total = rows.reduce((s, r) => s + r.ms, 0);
console.log(`${device.label}\nResNet-${depth}, batch ${batch}: ${total.toFixed(0)} ms of kernel time in ${rows.reduce((s, r) => s + r.count, 0)} dispatches\n`);
console.log(`${'kernel'.padEnd(52)} ${'ms'.padStart(8)} ${'share'.padStart(6)} ${'calls'.padStart(6)}`);
for (const r of rows.slice(0, top)) {
  console.log(`${r.label.slice(0, 52).padEnd(52)} ${r.ms.toFixed(1).padStart(8)} ${((100 * r.ms) / total).toFixed(1).padStart(5)}% ${String(r.count).padStart(6)}`);
}
x.dispose();
labels.dispose();
device.destroy();
