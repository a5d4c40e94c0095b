import { createDevice } from './engine/device.ts';
import { conv2d, conv2dBackwardFilter, conv2dBackwardInput } from './engine/ops/conv.ts';
import { randn, tidy } from './engine/tensor.ts';
const [cin, cout, size, k, stride, batch] = process.argv.slice(2).map(Number) as [number, number, number, number, number, number];
const device = await createDevice({ dawnFlags: ['disable-dawn-features=timestamp_quantization'] });
const pad = k === 3 ? 1 : 0;
const xs = [batch, cin, size, size];
const ho = Math.floor((size + 2 * pad - k) / stride) + 1;
const x = randn(device, xs, { seed: 1 });
const w = randn(device, [cout, cin, k, k], { seed: 2 });
const dy = randn(device, [batch, cout, ho, ho], { seed: 3 });
const opts = { stride, padding: pad };
const ops: Record<string, () => void> = {
  fwd: () => { tidy(() => { conv2d(x, w, null, opts); }); device.flush(); },
  dx: () => { tidy(() => { conv2dBackwardInput(dy, w, xs, opts); }); device.flush(); },
  dw: () => { tidy(() => { conv2dBackwardFilter(dy, x, [cout, cin, k, k], opts); }); device.flush(); },
};
for (const [name, run] of Object.entries(ops)) {
  run(); await device.sync();
  for (let r = 0; r < 2; r++) {
    const rows = await device.profile(run);
    const tot = rows.reduce((s, q) => s + q.ms, 0);
    console.log(`${name} ${tot.toFixed(2)} ms: ` + rows.map((q) => `${q.label} ${q.ms.toFixed(2)}×${q.count}`).join(' | '));
  }
}
device.destroy();
