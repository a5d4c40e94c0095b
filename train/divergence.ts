// The one divergence monitor: every loop that trains (the training loop, the range
// test on the GPU, the range test over a user's step function) holds its losses
// against it. The loss is smoothed by a debiased exponential average; a loss that is
// not finite, or a smoothed loss above `factor` × the lowest smoothed loss so far
// (once `warmup` losses have been seen), is divergence. During the warm-up the
// smoothed loss means little, so where a `floor` is given (the loss of a uniform
// guess) each raw loss is held against factor × that floor instead: a run whose LR
// is far too high (loss 2e10 at step 3) is caught before its first checkpoint.
// No imports: it loads without the GPU (rangetest/'s package entry uses it).

export interface DivergenceOptions {
  factor: number;
  /** EMA coefficient of the smoothing */
  beta?: number;
  /** losses seen before the smoothed loss is judged (the training loop: 10; a range test: 1) */
  warmup?: number;
  /** the loss of an uninformed guess (ln of the class count), or 0 for none */
  floor?: number;
}

export class DivergenceMonitor {
  static readonly WARMUP = 10;
  readonly factor: number;
  readonly beta: number;
  readonly warmup: number;
  readonly floor: number;
  private avg = 0;
  private n = 0;
  private min = Infinity;
  /** the last smoothed loss (NaN after a loss that was not finite) */
  smoothed = NaN;

  constructor(o: DivergenceOptions) {
    this.factor = o.factor;
    this.beta = o.beta ?? 0.98;
    this.warmup = o.warmup ?? DivergenceMonitor.WARMUP;
    this.floor = o.floor ?? 0;
  }

  /** The level a sound raw loss stays under: factor × the lowest smoothed loss (or the floor, if higher). */
  get bound(): number {
    return this.factor * Math.max(this.floor, this.min === Infinity ? 0 : this.min);
  }

  /** Adds one loss; returns why the run diverged, else null. `where` names the step in the message ('step 12 (lr 0.3)'). */
  push(loss: number, where: string): string | null {
    if (!Number.isFinite(loss)) {
      this.smoothed = NaN;
      return `loss became ${loss} at ${where}`;
    }
    this.avg = this.beta * this.avg + (1 - this.beta) * loss;
    this.n++;
    const smoothed = this.avg / (1 - this.beta ** this.n);
    this.smoothed = smoothed;
    if (this.n <= this.warmup && this.floor > 0) {
      const bound = this.factor * Math.max(this.floor, this.min === Infinity ? 0 : this.min);
      if (loss > bound) return `loss ${loss.toPrecision(4)} at ${where} exceeded ${this.factor}× ${Math.max(this.floor, this.min).toPrecision(4)} (the loss of a uniform guess, or the lowest so far)`;
    }
    if (this.n > this.warmup && smoothed > this.factor * this.min) {
      return `smoothed loss ${smoothed.toPrecision(4)} exceeded ${this.factor}× its minimum ${this.min.toPrecision(4)} at ${where}`;
    }
    this.min = Math.min(this.min, smoothed);
    return null;
  }
}
