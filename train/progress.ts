// The training progress bar: step, ETA, images/s, loss, accuracy, LR and momentum.
// cli-progress draws it in place on a terminal; without a terminal (CI, a log file)
// it prints a plain line every few percent instead of carriage-return noise.
import cliProgress from 'cli-progress';

export interface ProgressFields {
  loss: number;
  acc: number;
  lr: number;
  momentum: number;
  imagesPerSec: number;
}

const fmt = (x: number, digits = 4): string => (Number.isFinite(x) ? x.toPrecision(digits) : String(x));

export class TrainingProgress {
  private bar: cliProgress.SingleBar | null = null;
  private lastLine = -1;
  private lastStep = 0;
  private lastPayload: Record<string, string> = { ips: '-', loss: '-', acc: '-', lr: '-', momentum: '-' };
  private readonly tty: boolean;

  constructor(
    private readonly total: number,
    private readonly label = 'train',
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly quiet = false,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  start(step: number): void {
    if (this.quiet || !this.tty) return;
    this.bar = new cliProgress.SingleBar(
      {
        stream: this.stream,
        format:
          `${this.label} {bar} {value}/{total} | ETA {eta_formatted} | {ips} img/s | loss {loss} | acc {acc} | lr {lr} | mom {momentum}`,
        barsize: 24,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    this.lastStep = step;
    this.bar.start(this.total, step, this.lastPayload);
  }

  update(step: number, f: ProgressFields): void {
    if (this.quiet) return;
    const payload = {
      ips: f.imagesPerSec.toFixed(1),
      loss: fmt(f.loss),
      acc: fmt(f.acc, 3),
      lr: fmt(f.lr, 3),
      momentum: fmt(f.momentum, 3),
    };
    this.lastStep = step;
    this.lastPayload = payload;
    if (this.bar) {
      this.bar.update(step, payload);
      return;
    }
    // no terminal: a line at each 5% (and the last step)
    const bucket = Math.floor((step / this.total) * 20);
    if (bucket === this.lastLine && step !== this.total) return;
    this.lastLine = bucket;
    this.stream.write(
      `${this.label} ${step}/${this.total} | ${payload.ips} img/s | loss ${payload.loss} | acc ${payload.acc} | lr ${payload.lr} | mom ${payload.momentum}\n`,
    );
  }

  /** Prints a line above the bar (evaluation results, warnings). */
  log(line: string): void {
    if (this.quiet) return;
    if (this.bar) {
      this.bar.stop();
      this.stream.write(`${line}\n`);
      this.bar.start(this.total, this.lastStep, this.lastPayload);
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
