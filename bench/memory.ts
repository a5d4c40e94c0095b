/**
 * Memory of a training step (issue 19): the peak of live GPU memory (device.memoryStats(),
 * the pool's own accounting: every buffer and texture a step holds at once) of one SGD step
 * of a CIFAR ResNet (option A) at each measured batch size, a straight line through them
 * (the weights, optimizer state and pool slack are fixed; activations grow with the batch),
 * and the largest batch that fits: the adapter's buffer-binding limit caps the largest single
 * buffer; with --memory-gib the line caps the total. WebGPU does not say how much memory the
 * adapter has, so that figure is given, not read (an H200: 139).
 *
 * --precision f16: the half-precision step (f16 activations and gradients, train --precision f16).
 *
 *   node --import tsx bench/memory.ts [--depth 56] [--batches 32,128] [--memory-gib 139] [--precision f16] [--json FILE]
 */
import { writeFileSync } from 'node:fs';
import { createDevice } from '../gpu/device.ts';
import { resnetStep } from './resnetStep.ts';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const depth = Number(flag('depth', '56'));
const batches = flag('batches', '32,128').split(',').map(Number);
const memoryGiB = process.argv.includes('--memory-gib') ? Number(flag('memory-gib', '0')) : null;
const jsonPath = process.argv.includes('--json') ? flag('json', '') : null;
const precision = flag('precision', 'f32');
if (precision !== 'f32' && precision !== 'f16') throw new Error(`--precision: f32 or f16, got '${precision}'`);
if (!Number.isInteger(depth) || batches.length < 2 || batches.some((b) => !Number.isInteger(b) || b < 1)) {
  throw new Error('usage: bench/memory.ts [--depth N] [--batches B1,B2,...] (two or more batch sizes) [--memory-gib G] [--json FILE]');
}

const MiB = 2 ** 20;
const device = await createDevice();
const points: { batch: number; peakBytes: number; largestBufferBytes: number; liveBefore: number }[] = [];
for (const batch of batches) {
  device.trimPool();
  const { step, dispose } = resnetStep(device, depth, batch, { precision });
  step(); // the momentum buffers exist from the first step on
  await device.sync();
  device.resetPeakMemory();
  const liveBefore = device.memoryStats().liveBytes;
  step();
  await device.sync();
  const m = device.memoryStats();
  points.push({ batch, peakBytes: m.peakLiveBytes, largestBufferBytes: m.largestBufferBytes, liveBefore });
  console.log(`ResNet-${depth}${precision === 'f16' ? ' (f16)' : ''}, batch ${batch}: peak ${(m.peakLiveBytes / MiB).toFixed(1)} MiB live during a step (${(liveBefore / MiB).toFixed(1)} MiB held between steps: weights, momentum, inputs), largest buffer ${(m.largestBufferBytes / MiB).toFixed(1)} MiB`);
  dispose();
}

// least squares through the points: peak = fixed + perImage · batch
const n = points.length;
const mb = points.reduce((a, p) => a + p.batch, 0) / n;
const mp = points.reduce((a, p) => a + p.peakBytes, 0) / n;
const perImage = points.reduce((a, p) => a + (p.batch - mb) * (p.peakBytes - mp), 0) / points.reduce((a, p) => a + (p.batch - mb) ** 2, 0);
const fixed = mp - perImage * mb;
const last = points[n - 1]!;
const bufferPerImage = last.largestBufferBytes / last.batch;
const byBinding = Math.floor(device.limits.maxStorageBufferBindingSize / bufferPerImage);
const byMemory = memoryGiB === null ? null : Math.floor((memoryGiB * 2 ** 30 - fixed) / perImage);
console.log(`line: peak ≈ ${(fixed / MiB).toFixed(1)} MiB + ${(perImage / MiB).toFixed(3)} MiB per image`);
for (const b of [128, 1000]) console.log(`  predicted peak at batch ${b}: ${((fixed + perImage * b) / MiB).toFixed(0)} MiB`);
console.log(`largest batch: ${byBinding} by the adapter's maxStorageBufferBindingSize (${(device.limits.maxStorageBufferBindingSize / MiB).toFixed(0)} MiB; the largest buffer is ${(bufferPerImage / 1024).toFixed(1)} KiB per image)` +
  (byMemory === null ? '; give --memory-gib for the memory bound' : `, ${byMemory} by ${memoryGiB} GiB of memory: ${Math.min(byBinding, byMemory)}`));
console.log(`adapter: ${device.label}`);
if (jsonPath) writeFileSync(jsonPath, `${JSON.stringify({ depth, precision, adapter: device.label, points, fixedBytes: fixed, perImageBytes: perImage, maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize, largestBatch: { byBinding, byMemory, memoryGiB } }, null, 1)}\n`);
await device.close();
