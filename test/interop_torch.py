"""The PyTorch side of test/interop-torch.test.ts.

An independent CIFAR ResNet written from He et al. 2016 ("Deep Residual Learning
for Image Recognition", sec. 4.2), not from models/resnet.ts: depth 6n+2, a 3x3
conv to `width` channels, three stages of n basic blocks at width x1/x2/x4
(stride 2 at the start of stages 2 and 3), global average pooling, a linear
layer. Option-A shortcuts: x[:, :, ::2, ::2] with zero channels padded on both
sides ((out-in)//2 before), as in the widely used PyTorch CIFAR ResNets
(akamaster/pytorch_resnet_cifar10's F.pad(..., planes//4, planes//4)).
Parameter names follow torchvision (conv1, bn1, layer1.0.conv1, ..., fc).

safetensors is read and written here by hand (the `safetensors` package is not
installed on Debian's python3-torch machines): an 8-byte little-endian header
length, a JSON header, then the tensors' bytes.

    /usr/bin/python3 test/interop_torch.py DIR --depth 8 --width 16 --classes 10

reads   DIR/engine.safetensors  (the engine's checkpoint weights)
        DIR/inputs.safetensors  ("x": NCHW float32 images)
writes  DIR/torch-of-engine.safetensors  ("logits": the engine's weights run by this model, eval mode)
        DIR/torch-model.safetensors      (this model's state_dict after a few SGD steps from PyTorch's init)
        DIR/torch-logits.safetensors     ("logits": that model's eval-mode logits on x)
"""
import argparse
import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, e in header.items():
        if e["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {e['dtype']}, not one of {sorted(DTYPES)}")
        begin, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + begin : base + end]), dtype=DTYPES[e["dtype"]])
        out[name] = t.reshape(e["shape"])
    return out


def write_safetensors(path, tensors):
    # the reference's layout: by descending dtype size, then name; header padded to 8 with spaces
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, chunks, offset = {}, [], 0
    for name, t in items:
        b = t.detach().contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.cin, self.cout = stride, cin, cout

    def shortcut(self, x):
        if self.stride == 1 and self.cin == self.cout:
            return x
        # option A: parameter-free; subsample, then zero channels around the input's
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.cout - self.cin
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth, width=16, classes=10, channels=3):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for s, mult in enumerate((1, 2, 4)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, width * mult, 2 if s > 0 and i == 0 else 1))
                cin = width * mult
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--depth", type=int, required=True)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--steps", type=int, default=5, help="SGD steps before saving this side's model")
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = read_safetensors(f"{a.dir}/inputs.safetensors")["x"]

    # (a) the engine's weights in this model: strict, and dtypes exactly PyTorch's own
    theirs = read_safetensors(f"{a.dir}/engine.safetensors")
    model = CifarResNet(a.depth, a.width, a.classes, x.shape[1])
    own = model.state_dict()
    for k, v in theirs.items():
        if k in own and v.dtype != own[k].dtype:
            sys.exit(f"engine.safetensors: {k} is {v.dtype}, PyTorch's state_dict has {own[k].dtype}")
    model.load_state_dict(theirs, strict=True)
    model.eval()
    with torch.no_grad():
        write_safetensors(f"{a.dir}/torch-of-engine.safetensors", {"logits": model(x)})

    # (b) a model of PyTorch's own: its default init, a few SGD steps in train
    # mode so the batchnorm running statistics move, then saved
    model = CifarResNet(a.depth, a.width, a.classes, x.shape[1])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(a.steps):
        xb = torch.randn(32, *x.shape[1:]) * 1.5 + 0.3
        yb = torch.randint(0, a.classes, (32,))
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        write_safetensors(f"{a.dir}/torch-model.safetensors", model.state_dict())
        write_safetensors(f"{a.dir}/torch-logits.safetensors", {"logits": model(x)})
    print(json.dumps({"torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
