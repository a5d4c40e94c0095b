// The 3×3 stride-1 row kernels (kernels/conv2dRows.ts) direct against Winograd's F(4,3)
// along rows (policy.conv.winograd), forward and grad input at CIFAR ResNet shapes, in
// process CPU time per call (on lavapipe the kernels run on the process's own threads,
// so CPU time is the work and moves little when other processes share the machine).
// Alternating rounds; the best round of each is printed with the ratio.
//   node --import tsx bench/experiments/winograd-rows.ts [--batch 128] [--rounds 4] [--reps 4]
import { createDevice } from '../../gpu/device.ts';
import { defaultKernelPolicy } from '../../gpu/policy.ts';
import { Rng, randn, tidy, conv2d, conv2dBackwardInput, keep } from '../../engine/index.ts';

const args = process.argv.slice(2);
const arg = (name: string, d: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : d);
const batch = arg('--batch', 128);
const rounds = arg('--rounds', 4);
const reps = arg('--reps', 4);
const device = await createDevice({ policy: defaultKernelPolicy() });
console.log(device.label);
const rng = new Rng(1);
const shapes: [number, number][] = [
  [16, 32],
  [32, 16],
  [64, 8],
];
for (const [c, hw] of shapes) {
  const x = keep(randn(device, [batch, c, hw, hw], { rng }));
  const w = keep(randn(device, [c, c, 3, 3], { rng }));
  const dy = keep(randn(device, [batch, c, hw, hw], { rng }));
  const flop = 2 * batch * c * c * 9 * hw * hw;
  for (const part of ['forward', 'grad input'] as const) {
    const best: Record<string, number> = { direct: Infinity, winograd: Infinity };
    for (let r = 0; r < rounds + 1; r++) {
      for (const mode of ['direct', 'winograd'] as const) {
        device.policy = { ...device.policy, conv: { ...device.policy.conv, winograd: mode === 'winograd' } };
        const t0 = process.cpuUsage();
        for (let i = 0; i < reps; i++) {
          tidy(() => {
            if (part === 'forward') conv2d(x, w, null, { padding: 1 });
            else conv2dBackwardInput(dy, w, x.shape, { padding: 1 });
          });
        }
        await device.sync();
        const u = process.cpuUsage(t0);
        const ms = (u.user + u.system) / 1000 / reps;
        if (r > 0) best[mode] = Math.min(best[mode]!, ms); // round 0 compiles
      }
    }
    const gf = (ms: number): string => ((flop / (ms / 1000)) / 1e9).toFixed(1);
    console.log(
      `${c}→${c} @${hw}×${hw} ${part.padEnd(10)}  direct ${best.direct!.toFixed(1)} ms CPU (${gf(best.direct!)} GFLOP/CPU-s)  ` +
        `Winograd ${best.winograd!.toFixed(1)} ms CPU (${gf(best.winograd!)})  ratio ${(best.direct! / best.winograd!).toFixed(2)}×`,
    );
  }
  for (const t of [x, w, dy]) t.dispose();
}
device.destroy();
