// What one store costs on this adapter: each invocation computes STORES vec4s and
// stores them to a storage buffer (array<vec4<f32>>, consecutive across lanes, as a
// conv's output row is) or to a write-only rgba32float storage texture (the same
// bytes: 16 texels per row), against the same kernel storing only one vec4 (the sum).
// CPU cycles per 8-lane vec4 store (process CPU time × --ghz), net of the compute.
//
//   node --import tsx bench/experiments/lavapipe-stores.ts [--ghz 2.45]
import { makeRawDevice, rawTime } from './raw.ts';

const args = process.argv.slice(2);
const ghz = Number(args[args.indexOf('--ghz') + 1] ?? 0) || 2.45;
const STORES = 32;
const WRAP = Number(args[args.indexOf('--wrap') + 1] ?? 0) || 65536; // vec4s (1 MiB): in cache
const INVOCATIONS = 64 * 1024;

function source(kind: 'none' | 'buffer' | 'texture'): string {
  const vals = Array.from({ length: STORES }, (_, j) => `let v${j} = vec4<f32>(f32(li) + ${j}.0, m.x, m.y, f32(wid.x));`);
  const stores = Array.from({ length: STORES }, (_, j) => {
    const idx = `(((wid.x * ${STORES}u + ${j}u) * 64u + li) % ${WRAP}u)`; // vec4 index: lanes consecutive, within --wrap vec4s
    if (kind === 'buffer') return `out[${idx}] = v${j};`;
    if (kind === 'texture') return `textureStore(T, vec2<u32>((${idx}) % 16u, ((${idx}) / 16u) % 4096u), (${idx}) / 65536u, v${j});`;
    return '';
  });
  const sum = Array.from({ length: STORES }, (_, j) => `v${j}`).join(' + ');
  return `@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;
${kind === 'texture' ? '@group(0) @binding(2) var T: texture_storage_2d_array<rgba32float, write>;' : ''}
@group(0) @binding(1) var<uniform> p: vec4<f32>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let m = p.xy;
  ${vals.join('\n  ')}
  ${stores.join('\n  ')}
  ${kind === 'none' ? `out[wid.x * 64u + li] = ${sum};` : ''}
  ${kind === 'texture' ? 'if (p.z > 1e30) { out[0] = v0; }' : ''}
}`;
}

const dev = await makeRawDevice([]);
const gpu = dev.device;
const out = gpu.createBuffer({ size: INVOCATIONS * STORES * 16, usage: GPUBufferUsage.STORAGE });
const params = gpu.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM });
const layers = (INVOCATIONS * STORES) / 65536;
const tex = gpu.createTexture({ size: [16, 4096, layers], format: 'rgba32float', usage: GPUTextureUsage.STORAGE_BINDING });
const best: Record<string, number> = {};
for (let round = 0; round < 5; round++) {
  for (const kind of ['none', 'buffer', 'texture'] as const) {
    const res: GPUBindingResource[] = [{ buffer: out }, { buffer: params }];
    if (kind === 'texture') res.push(tex.createView({ dimension: '2d-array' }));
    const k = dev.kernel(source(kind), res, [INVOCATIONS / 64]);
    const t = await rawTime(dev, [k], 2);
    best[kind] = Math.min(best[kind] ?? Infinity, t.cpuMs);
  }
}
console.log(`adapter: ${dev.label}`);
for (const kind of ['buffer', 'texture']) {
  const cycles = ((best[kind]! - best.none!) * 1e6 * ghz) / ((INVOCATIONS * STORES) / 8);
  console.log(`${kind.padEnd(8)} ${cycles.toFixed(1)} cycles per 8-lane vec4 store (net)`);
}
dev.destroy();
