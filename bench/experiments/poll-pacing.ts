// dawn.node's continuous polling against polling paced to one tick every few ms
// (gpu/poll.ts): a ResNet training step, timed by wall clock from the first record to
// the end of a sync, in alternating rounds on one device (created with continuous
// polling; the paced rounds add a pacing request of their own and release it).
// Prints images/s per round, the process's CPU use in cores, and the best round of
// each setting against continuous polling's best.
//   node --import tsx bench/experiments/poll-pacing.ts [--depth 20] [--batch 128] [--steps 3] [--rounds 4] [--intervals 1,4]
import { cpus, loadavg } from 'node:os';
import { createDevice } from '../../gpu/device.ts';
import { paceDawnPolling } from '../../gpu/poll.ts';
import { softmaxCrossEntropy } from '../../engine/ops/loss.ts';
import { SGD } from '../../engine/optim.ts';
import { randn, tensor, tidy } from '../../engine/tensor.ts';
import { resnet } from '../../models/resnet.ts';

const args = process.argv.slice(2);
const arg = (name: string, d: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : d);
const depth = Number(arg('--depth', '20'));
const batch = Number(arg('--batch', '128'));
const steps = Number(arg('--steps', '3'));
const rounds = Number(arg('--rounds', '4'));
const intervals = arg('--intervals', '1,4').split(',').map(Number);

const device = await createDevice({ pollIntervalMs: 0 });
console.log(`${device.label}; ${cpus().length} cores; load average before ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
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
for (let i = 0; i < 2; i++) step();
await device.sync();

const settings = [0, ...intervals];
const name = (ms: number): string => (ms === 0 ? 'continuous' : `every ${ms} ms`);
const results = new Map<number, { ips: number[]; cores: number[] }>(settings.map((ms) => [ms, { ips: [], cores: [] }]));
for (let r = 0; r < rounds; r++) {
  for (const ms of settings) {
    const release = paceDawnPolling(ms);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) step();
    await device.sync();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    release();
    results.get(ms)!.ips.push((batch * steps) / (wall / 1000));
    results.get(ms)!.cores.push((c.user + c.system) / 1000 / wall);
  }
}
console.log(`ResNet-${depth}, batch ${batch}, ${steps} steps per round, ${rounds} alternating rounds`);
const best = (a: number[]): number => Math.max(...a);
const base = best(results.get(0)!.ips);
for (const [ms, s] of results) {
  console.log(
    `  ${name(ms).padEnd(12)} ${best(s.ips).toFixed(1).padStart(6)} images/s [${s.ips.map((v) => v.toFixed(1)).join(', ')}], ` +
      `process CPU ${s.cores.map((v) => v.toFixed(2)).join(', ')} cores${ms ? `; ×${(best(s.ips) / base).toFixed(2)} of continuous` : ''}`,
  );
}
console.log(`load average after ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
device.destroy();
