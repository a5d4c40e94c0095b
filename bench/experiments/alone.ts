// Kernels timed alone by the wall clock (bench/experiments' timing scripts): each case recorded `reps` times (a submit after
// each) and synced, in rounds that alternate the cases; ms per call, the median of the rounds.
import type { Device } from '../../gpu/device.ts';

/** The command line of such an experiment: --shape batch,channels,side (default 128,16,32), --reps (10), --rounds (3). */
export function aloneArgs(argv = process.argv.slice(2)): { batch: number; c: number; hw: number; reps: number; rounds: number } {
  const opt = (n: string, d: string): string => (argv.includes(n) ? argv[argv.indexOf(n) + 1]! : d);
  const [batch, c, hw] = opt('--shape', '128,16,32').split(',').map(Number) as [number, number, number];
  return { batch, c, hw, reps: Number(opt('--reps', '10')), rounds: Number(opt('--rounds', '3')) };
}

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
