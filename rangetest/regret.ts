// Scoring an LR choice against ground truth (issue 15 item 4): a grid of training runs
// at several max LRs gives accuracy against LR; a method's regret is the best grid
// accuracy minus the accuracy at its pick, read off the grid curve by linear
// interpolation in log LR. A pick outside the grid has no reading (null): the curve
// beyond the grid is unknown.

export interface GridPoint {
  maxLr: number;
  /** accuracy (or any score, higher is better) at this max LR */
  acc: number;
}

/** The grid's score at `lr` (linear in log lr between grid points), or null outside the grid. */
export function gridScoreAt(grid: readonly GridPoint[], lr: number): number | null {
  const g = [...grid].sort((a, b) => a.maxLr - b.maxLr);
  if (g.length === 0 || !(lr >= g[0]!.maxLr) || !(lr <= g[g.length - 1]!.maxLr)) return null;
  for (let i = 0; i + 1 < g.length; i++) {
    const a = g[i]!;
    const b = g[i + 1]!;
    if (lr <= b.maxLr) {
      const t = Math.log(lr / a.maxLr) / Math.log(b.maxLr / a.maxLr);
      return a.acc + t * (b.acc - a.acc);
    }
  }
  return g[g.length - 1]!.acc;
}

/** Best grid score minus the score at `lr`: 0 at the grid's best, null outside the grid. */
export function regret(grid: readonly GridPoint[], lr: number): number | null {
  const at = gridScoreAt(grid, lr);
  return at === null ? null : Math.max(...grid.map((p) => p.acc)) - at;
}

/** A pick's regret for scoring: off the grid it is read at the grid's nearest end (a bound in the method's favour), and flagged. */
export function pickRegret(grid: readonly GridPoint[], lr: number): { regret: number; offGrid: 'below' | 'above' | null } {
  const g = [...grid].sort((a, b) => a.maxLr - b.maxLr);
  const lo = g[0]!.maxLr;
  const hi = g[g.length - 1]!.maxLr;
  const offGrid = lr < lo ? 'below' : lr > hi ? 'above' : null;
  return { regret: regret(g, Math.min(hi, Math.max(lo, lr)))!, offGrid };
}

/** One real setting: its accuracy-against-max-LR grid and the range-test curves recorded on it. */
export interface RegretSetting {
  name: string;
  grid: readonly GridPoint[];
  curves: readonly { name: string; lrs: readonly number[]; losses: readonly number[] }[];
}

/** A max-LR rule applied to one range-test curve. */
export type LrRule = (curve: { lrs: readonly number[]; losses: readonly number[] }) => number;

/** Which of a setting's curves a rule reads (the sweeps as users run them, a longer one, ...); each is scored and the regrets averaged. */
export type SweepProtocol = (setting: RegretSetting) => RegretSetting['curves'];

export interface RuleScore {
  rule: string;
  /** per setting: the picks (one per curve the protocol gave) and their mean regret */
  perSetting: { setting: string; picks: number[]; regret: number; offGrid: number }[];
  mean: number;
  worst: number;
  /** settings on which this rule had the largest regret of all rules (ties count for each) */
  worstOf: number;
}

/** The median of picks, the lower middle for an even count: what a repeated range test answers (run/rangeTest.ts). */
export function medianPick(picks: readonly number[]): number {
  const sorted = [...picks].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/**
 * Scores every rule on every setting under one protocol: regret (points) against the setting's
 * grid best. combine 'each': every curve's pick is scored and the regrets averaged (one sweep
 * as a user runs it, over seeds); 'median': the median of the picks is scored (repeated sweeps).
 */
export function scoreRules(
  settings: readonly RegretSetting[],
  rules: Readonly<Record<string, LrRule>>,
  protocol: SweepProtocol,
  combine: 'each' | 'median' = 'each',
): RuleScore[] {
  const used = settings.filter((s) => protocol(s).length > 0);
  const scores: RuleScore[] = Object.entries(rules).map(([rule, pick]) => {
    const perSetting = used.map((s) => {
      const picks = protocol(s).map((c) => pick(c));
      const scored = (combine === 'median' ? [medianPick(picks)] : picks).map((lr) => pickRegret(s.grid, lr));
      return {
        setting: s.name,
        picks,
        regret: scored.reduce((a, r) => a + r.regret, 0) / scored.length,
        offGrid: scored.filter((r) => r.offGrid).length,
      };
    });
    const regrets = perSetting.map((p) => p.regret);
    return { rule, perSetting, mean: regrets.reduce((a, b) => a + b, 0) / Math.max(1, regrets.length), worst: Math.max(...regrets), worstOf: 0 };
  });
  used.forEach((_, i) => {
    const worst = Math.max(...scores.map((s) => s.perSetting[i]!.regret));
    for (const s of scores) if (s.perSetting[i]!.regret >= worst - 1e-9) s.worstOf++;
  });
  return scores;
}
