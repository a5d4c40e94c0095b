// Host (CPU) cost of recording a training step, separate from the GPU's work: the
// H200 run showed batch-128 steps bound by it (~55 µs per dispatch). A tiny batch
// keeps the adapter's own work small; the per-dispatch recording cost does not
// depend on the batch.
// --gpu-path records the kernels a GPU runs (the buffer convs, batchnorm's GPU layouts)
// instead of lavapipe's. The minimum over steps is the figure to compare on a loaded
// machine: a step the scheduler preempts only gets slower.
// --no-bn-merge keeps batchnorm's merge dispatches (policy.fusion.bnMerge off), for the count before it.
//   node --import tsx bench/experiments/host-overhead.ts [--depth 56] [--batch 2] [--steps 30] [--gpu-path] [--no-bn-merge]
import { createDevice } from '../../gpu/device.ts';
import { defaultKernelPolicy } from '../../gpu/policy.ts';
import { softmaxCrossEntropy } from '../../engine/ops/loss.ts';
import { SGD } from '../../engine/optim.ts';
import { randn, tensor, tidy } from '../../engine/tensor.ts';
import { resnet } from '../../models/resnet.ts';

const args = process.argv.slice(2);
const arg = (name: string, d: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : d;
};
const depth = arg('--depth', 56);
const batch = arg('--batch', 2);
const steps = arg('--steps', 30);
const gpuPath = args.includes('--gpu-path');
const policy = defaultKernelPolicy();
if (gpuPath) {
  policy.conv = { ...policy.conv, path: 'buffer' };
  policy.batchnorm = { cpuLayouts: false };
}
const noMerge = args.includes('--no-bn-merge');
if (noMerge) policy.fusion = { ...policy.fusion, bnMerge: false };
const device = await createDevice({ policy });
const model = resnet(device, { depth, numClasses: 10, shortcut: 'A' });
model.train(true);
const opt = new SGD({ params: model.parameters(), lr: 0.05, momentum: 0.9, weightDecay: 5e-4 });
const x = randn(device, [batch, 3, 32, 32], { seed: 1 });
const labels = tensor(device, Array.from({ length: batch }, (_, i) => i % 10), [batch], 'i32');
let recordMs = 0;
let flushMs = 0;
let minRecordMs = Infinity;
const step = (): void => {
  const t0 = performance.now();
  tidy(() => softmaxCrossEntropy(model.forward(x), labels).backward());
  opt.step();
  opt.zeroGrad();
  const t1 = performance.now();
  device.flush();
  const t2 = performance.now();
  recordMs += t1 - t0;
  minRecordMs = Math.min(minRecordMs, t1 - t0);
  flushMs += t2 - t1;
};
for (let i = 0; i < 3; i++) step();
await device.sync();
recordMs = flushMs = 0;
minRecordMs = Infinity;
const e0 = device.executionStats();
const t0 = performance.now();
for (let i = 0; i < steps; i++) {
  step();
  await device.sync();
}
const wall = performance.now() - t0;
const dispatches = (device.executionStats().dispatches - e0.dispatches) / steps;
console.log(
  `ResNet-${depth} batch ${batch}${gpuPath ? ' (GPU kernel path)' : ''}${noMerge ? ' (no bnMerge)' : ''}: ${dispatches} dispatches/step; recording ${(recordMs / steps).toFixed(2)} ms/step, fastest ${minRecordMs.toFixed(2)} ms ` +
    `(${((recordMs / steps / dispatches) * 1000).toFixed(1)} µs/dispatch), flush+submit ${(flushMs / steps).toFixed(2)} ms, ` +
    `wall with sync ${(wall / steps).toFixed(2)} ms`,
);
device.destroy();
