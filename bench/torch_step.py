"""PyTorch fp32 peer for the ResNet training-step benchmark (bench/step.ts).

The same network as models/resnet.ts (He et al.'s CIFAR ResNet, option-A
shortcuts: subsample and zero-pad channels), SGD with momentum 0.9 and weight
decay 5e-4, batch 128 of random 32x32 images, fp32 with TF32 off, or AMP (--amp). Times steps
with CUDA events after a warm-up (wall clock on --device cpu), and steps back to
back without a sync; prints one JSON object.

    python3 bench/torch_step.py --depth 56 --batch 128
    python3 bench/torch_step.py --configs 20x128,56x1000 --amp-too     (a JSON line each, one process)
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.pad:
            short = x[:, :, :: self.stride, :: self.stride]
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class CifarResNet(nn.Module):
    def __init__(self, depth, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            for j in range(n):
                layers.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=56)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--amp", action="store_true", help="autocast to fp16 with a GradScaler (PyTorch AMP)")
    ap.add_argument("--configs", default="", help="DEPTHxBATCH,... instead of --depth/--batch")
    ap.add_argument("--amp-too", action="store_true", help="each config in fp32 and in AMP")
    a = ap.parse_args()
    configs = [tuple(map(int, c.split("x"))) for c in a.configs.split(",") if c] or [(a.depth, a.batch)]
    for depth, batch in configs:
        for amp in ([False, True] if a.amp_too else [a.amp]):
            try:
                run(argparse.Namespace(**{**vars(a), "depth": depth, "batch": batch, "amp": amp}))
            except Exception as e:  # one config failing (out of memory, say) costs only itself
                print(json.dumps({"depth": depth, "batch": batch, "amp": amp, "error": str(e).splitlines()[0]}), flush=True)


def run(a):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    if a.threads:
        torch.set_num_threads(a.threads)
    cuda = a.device == "cuda"
    dev = torch.device(a.device)
    model = CifarResNet(a.depth).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scaler = None
    if a.amp:  # torch.amp.GradScaler("cuda") from 2.3 on; torch.cuda.amp's before
        scaler = torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()
    x = torch.randn(a.batch, 3, 32, 32, device=dev)
    y = torch.arange(a.batch, device=dev) % 10

    def step():
        opt.zero_grad(set_to_none=True)
        if scaler:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            F.cross_entropy(model(x), y).backward()
            opt.step()

    for _ in range(a.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    times = []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(a.steps):
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            step()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1000)
    # steps back to back, no per-step sync: what a training loop gets
    n = max(10, a.steps // 2)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    if cuda:
        torch.cuda.synchronize()
    pipelined = (time.perf_counter() - t0) * 1000 / n
    ms = statistics.median(times)
    kind = "AMP fp16 (autocast + GradScaler)" if a.amp else "fp32 (TF32 off)"
    print(json.dumps({
        "peer": f"PyTorch {torch.__version__} {kind}, eager" + (", cudnn.benchmark" if cuda else f", {torch.get_num_threads()} threads"),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "depth": a.depth, "batch": a.batch, "amp": a.amp,
        "ms_per_step_median": ms, "ms_min": min(times), "ms_max": max(times),
        "images_per_s": a.batch / (ms / 1000),
        "ms_per_step_pipelined": pipelined,
        "images_per_s_pipelined": a.batch / (pipelined / 1000),
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
        "parameters": sum(p.numel() for p in model.parameters()),
    }), flush=True)


if __name__ == "__main__":
    main()
