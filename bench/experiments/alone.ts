// Kernels timed alone by the wall clock: each case recorded `reps` times (a submit after
// each) and synced, in rounds that alternate the cases; ms per call, the median of the rounds.
import type { Device } from '../../gpu/device.ts';

export async function timeAlone(device: Device, title: string, cases: [string, () => void][], reps: number, rounds: number): Promise<void> {
  const times = new Map<string, number[]>(cases.map(([name]) => [name, []]));
  for (const [, f] of cases) f(); // compile and warm every pipeline first
  await device.sync();
  for (let r = 0; r < rounds; r++) {
    for (const [name, f] of cases) {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) {
        f();
        device.flush();
      }
      await device.sync();
      times.get(name)!.push((performance.now() - t0) / reps);
    }
  }
  const width = Math.max(...cases.map(([name]) => name.length)) + 2;
  console.log(`${device.label}\n${title}, ms per call (median of ${rounds} rounds of ${reps}):`);
  for (const [name, t] of times) console.log(`  ${name.padEnd(width)} ${[...t].sort((a, b) => a - b)[t.length >> 1]!.toFixed(2).padStart(8)}   [${t.map((v) => v.toFixed(2)).join(', ')}]`);
}
