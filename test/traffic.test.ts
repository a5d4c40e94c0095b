// Device.countTraffic: the bytes the bench's --traffic figure is made of (bench/profile.ts).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { bindingAccess } from '../gpu/device.ts';
import { axpyInPlace, binary } from '../kernels/elementwise.ts';
import { empty, tensor } from '../engine/tensor.ts';
import { destroyTestDevice, testDevice } from './helpers.ts';

after(destroyTestDevice);

test('bindingAccess reads each binding as its WGSL declares it', () => {
  const code = `
@group(0) @binding(0) var X: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var T: texture_storage_2d_array<rgba32float, write>;
@group(0) @binding(4) var<uniform> p: P;`;
  assert.deepEqual(bindingAccess(code), ['r', 'r', 'w', 'w', 'u']);
});

test('countTraffic counts logical bytes per kernel, with what a dispatch declares beyond its bindings', async () => {
  const device = await testDevice();
  const n = 1000; // not a bucket size: the logical bytes count, not the pooled buffer's
  const a = tensor(device, Array.from({ length: n }, (_, i) => i), [n]);
  const b = tensor(device, Array.from({ length: n }, (_, i) => 2 * i), [n]);
  const out = empty(device, [n]);
  const rows = await device.countTraffic(() => {
    binary(device, 'add', a, b, out);
    axpyInPlace(device, out, a);
  });
  const add = rows.find((r) => r.label.startsWith('binary add'));
  const axpy = rows.find((r) => r.label.startsWith('axpy'));
  assert.deepEqual(add && [add.read, add.write, add.count], [2 * n * 4, n * 4, 1]);
  // the accumulation reads its destination as well as writing it
  assert.deepEqual(axpy && [axpy.read, axpy.write, axpy.count], [2 * n * 4, n * 4, 1]);
  const got = await out.toArray();
  assert.equal(got[7], 7 + 14 + 7);
  // nothing is counted outside countTraffic
  binary(device, 'add', a, b, out);
  assert.deepEqual(await device.countTraffic(() => {}), []);
  for (const t of [a, b, out]) t.dispose();
});
