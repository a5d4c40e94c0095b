// Tunes a model's kernels once into .cache/kernel-tuning.json (kernels/autotune.ts),
// as a training session does before its first step, so the GPU run's parallel
// training jobs (bench/gpu/run.sh train) read the cache instead of each timing the
// candidates at the same time on one GPU. Forced on (also on a software adapter).
//
//   node --import tsx bench/gpu/tune-model.ts [--model resnet20] [--batch 128] [--size 32] [--width N]
import { createDevice } from '../../gpu/device.ts';
import { buildModel } from '../../models/index.ts';
import { autotuneSession } from '../../run/autotune.ts';

const argv = process.argv.slice(2);
const opt = (name: string, d: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1]! : d;
};
const model = opt('--model', 'resnet20');
const batch = Number(opt('--batch', '128'));
const size = Number(opt('--size', '32'));
const width = argv.includes('--width') ? Number(opt('--width', '16')) : undefined;
const device = await createDevice();
device.policy = { ...device.policy, autotune: 'on' };
const m = buildModel(model, device, { numClasses: 10, ...(width ? { width } : {}) });
const t0 = performance.now();
await autotuneSession(device, m, [batch, 3, size, size], (line) => console.log(line));
console.log(`tune-model: ${model} at batch ${batch} on ${device.label} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
m.dispose();
device.destroy();
