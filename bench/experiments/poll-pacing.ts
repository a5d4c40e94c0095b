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
import { resnetStep } from '../resnetStep.ts';

const args = process.argv.slice(2);
const arg = (name: string, d: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : d);
const depth = Number(arg('--depth', '20'));
const batch = Number(arg('--batch', '128'));
const steps = Number(arg('--steps', '3'));
const rounds = Number(arg('--rounds', '4'));
const intervals = arg('--intervals', '1,4').split(',').map(Number);

const device = await createDevice({ pollIntervalMs: 0 });
console.log(`${device.label}; ${cpus().length} cores; load average before ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);
const { step, dispose } = resnetStep(device, depth, batch, { seed: 1 });
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
dispose();
device.destroy();
