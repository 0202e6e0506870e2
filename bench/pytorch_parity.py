"""PyTorch parity benchmark for the multi-scale U-Net (`mscnn`), issue #3.

Builds the same network as `src/nn/layers.rs and src/models/{unet,mscnn}.rs` in PyTorch, loads the same
safetensors, checks that `spectral-studio reconstruct --method mscnn` agrees with PyTorch on a
482x512 image, then times both engines on the same CPU with the same thread count, alternating
candle and PyTorch round by round so that machine noise hits both alike:

- forward: eval-mode forward of one 1x3x482x512 image (PyTorch under `torch.no_grad()`);
- train step: one train-mode step on a random 8x3x64x64 batch: forward, L1 loss, backward,
  AdamW(lr 1e-3, weight decay 1e-4) update;
- single ops on 8x32x64x64 with 32->32 3x3 kernels: convolution forward, input gradient,
  weight gradient, and LeakyReLU (`ops_8x32x64x64` in the summary, with candle's own path,
  its im2col path and stock candle each as a ratio to PyTorch).

The candle side is `spectral-studio bench recon --suite parity --model PATH --repeats R --json`,
whose last stdout line is a JSON object with `forward_ms`, `train_step_ms` (lists of R
milliseconds) and `threads`. The candle process gets `RAYON_NUM_THREADS=N`, PyTorch gets
`torch.set_num_threads(N)`.

The last line of stdout is one JSON object (see `summary` in `main`). Exit status: 0 when the
outputs agree within the tolerance, 1 when they do not, 2 when an input (binary, model, card)
is missing or a run fails.

Usage (from the repository root, in the throw-away venv of bench/requirements.txt):
    python bench/pytorch_parity.py [--model models/mscnn.safetensors] [--bin PATH]
        [--threads N] [--rounds 5] [--repeats 3] [--torch-only]
    python bench/pytorch_parity.py --init-model /tmp/m.safetensors --config 31,16,3,0.2

This file is also the single PyTorch definition of the model: `scripts/fixtures/mscnn.py`
imports `Mscnn` from here to write the parity test fixtures.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

IMAGE_ROWS, IMAGE_COLS = 482, 512
TRAIN_BATCH, TRAIN_SIDE = 8, 64
LEARNING_RATE, WEIGHT_DECAY = 1e-3, 1e-4
# Agreement tolerance, relative to the largest |output| of the PyTorch forward: both engines
# compute in float32 but sum convolutions in different orders, so a few ulps per layer add up.
RELATIVE_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------------------------
# The model, mirroring src/nn and src/models: module attribute names are the safetensors tensor names.
# ---------------------------------------------------------------------------------------------


class DoubleConv(nn.Module):
    """(3x3 conv without bias -> BatchNorm2d -> LeakyReLU(0.2) -> Dropout2d(p)) twice."""

    def __init__(self, c_in, c_out, dropout):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        self.act = nn.LeakyReLU(0.2)
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x):
        x = self.drop(self.act(self.bn1(self.conv1(x))))
        return self.drop(self.act(self.bn2(self.conv2(x))))


class UNet(nn.Module):
    """Encoder-decoder: `inc`, then `down.{i}` after 2x2 max-pools (widths w·2^(i+1)), then
    `up.{i}` from the deepest level back: pixel shuffle x2 (channels / 4), [skip, up] concat."""

    def __init__(self, c_in, width, depth, dropout):
        super().__init__()
        self.inc = DoubleConv(c_in, width, dropout)
        self.down = nn.ModuleList(
            DoubleConv(width << i, width << (i + 1), dropout) for i in range(depth)
        )
        # Level i: 2c deeper channels shuffle to c/2, joined with the c-channel skip.
        self.up = nn.ModuleList(
            DoubleConv((width << i) * 3 // 2, width << i, dropout) for i in range(depth)
        )
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        x = self.inc(x)
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(F.max_pool2d(x, 2))
        for i in reversed(range(len(self.up))):
            x = self.up[i](torch.cat([skips[i], self.shuffle(x)], dim=1))
        return x


class Mscnn(nn.Module):
    """U-Net (tensor prefix `unet.`) then a 1x1 conv with bias to the bands (`out.`). Any image
    size: replicate-pad bottom/right to a multiple of 2^depth, crop the output back.

    Camera-aware (candle's `camera_aware` config, src/models/camera.rs): the buffer
    `wiener.moment` (bands x bands) is the spectral prior; `forward(x, cam)` takes each image's
    camera matrices from `camera_matrices` (and `illumination_cues` when the model reads them):
    the body sees A(C).x (plus the cues' coordinates as constant channels) and
    y = P(C).x + N(C).body."""

    def __init__(self, bands, width, depth, dropout, linear_prior=False, intensity_normalised=False,
                 camera_aware=False, camera_coords=6, illumination_cues=False):
        super().__init__()
        self.depth = depth
        # As candle's `intensity_normalised` config: the net sees x / s, s = max(R+G+B, 1e-3),
        # and its output is multiplied by s.
        self.intensity_normalised = intensity_normalised
        self.camera_aware = camera_aware
        self.camera_coords = camera_coords
        self.illumination_cues = camera_aware and illumination_cues
        c_in = 3 if not camera_aware else camera_coords * (3 if illumination_cues else 1)
        self.unet = UNet(c_in, width, depth, dropout)
        self.out = nn.Conv2d(width, bands, 1)
        # Residual over a per-pixel linear map (tensor `prior.weight`, bands x 3), as candle's
        # `linear_prior` config: y = P.x + net(x). A camera-aware model has none.
        self.prior = nn.Linear(3, bands, bias=False) if linear_prior and not camera_aware else None
        if camera_aware:
            self.wiener = nn.Module()
            self.wiener.register_buffer("moment", torch.zeros(bands, bands))

    def forward(self, x, cam=None):
        rows, cols = x.shape[-2:]
        s = None
        if self.intensity_normalised:
            s = x.sum(dim=1, keepdim=True).clamp(min=1e-3)
            x = x / s
        chroma = x
        if self.camera_aware:
            if cam is None:
                raise ValueError("a camera-aware model needs the camera matrices of its input")
            x = torch.einsum("bkc,bchw->bkhw", cam["coords"], chroma)
            if self.illumination_cues:
                # (b, k, 3) . (b, 3, 2) -> (b, k, 2) -> (b, 2k): coordinate-major, cue-minor
                context = torch.einsum("bkc,bcj->bkj", cam["coords"], cam["cues"]).reshape(x.shape[0], -1)
                x = torch.cat([x, context[:, :, None, None].expand(-1, -1, rows, cols)], dim=1)
        m = 1 << self.depth
        pad_rows, pad_cols = (-rows) % m, (-cols) % m
        if pad_rows or pad_cols:
            x = F.pad(x, (0, pad_cols, 0, pad_rows), mode="replicate")
        y = self.out(self.unet(x))[..., :rows, :cols]
        if self.camera_aware:
            y = (torch.einsum("bnc,bchw->bnhw", cam["wiener"], chroma)
                 + torch.einsum("bnm,bmhw->bnhw", cam["null"], y))
        elif self.prior is not None:
            y = y + torch.einsum("bc,nchw->nbhw", self.prior.weight, chroma)
        if s is not None:
            y = y * s
        return y


WIENER_NOISE = 1e-3
BRIGHT_SHARE = 0.02


def camera_matrices(moment, camera, coords):
    """As camera_matrices in src/models/camera.rs, in float64: the Wiener map
    P = M.C^T (C.M.C^T + s2.I)^-1 (s2 = 1e-3 x the mean channel power), the coordinates
    A = U_k^T.P (U_k: the k leading eigenvectors of M, each signed to a positive sum) and the
    metamer projector N = I - C^T (C.C^T)^-1 C. `camera` is 3 x bands, rows summing to 1."""
    m, c = np.asarray(moment, np.float64), np.asarray(camera, np.float64)
    cm = c @ m
    a = cm @ c.T
    a = a + np.eye(3) * max(WIENER_NOISE * np.trace(a) / 3.0, 1e-12)
    wiener = np.linalg.solve(a, cm).T
    values, vectors = np.linalg.eigh(m)
    basis = vectors[:, np.argsort(values)[::-1][:coords]]
    basis = basis * np.where(basis.sum(axis=0) < 0, -1.0, 1.0)
    null = np.eye(m.shape[0]) - c.T @ np.linalg.solve(c @ c.T, c)
    return {"wiener": wiener, "coords": basis.T @ wiener, "null": null}


def illumination_cues(image_chw):
    """As illumination_cues in src/models/camera.rs: chromaticity of the mean RGB, then of
    the mean of the brightest 2 % of pixels by R+G+B; (3, 2), channel-major."""
    rgb = np.asarray(image_chw, np.float64).reshape(3, -1)
    n = rgb.shape[1]
    top = min(max(int(np.ceil(n * BRIGHT_SHARE)), 1), n)
    bright = rgb[:, np.argsort(rgb.sum(axis=0), kind="stable")[n - top:]].sum(axis=1)
    grey = rgb.sum(axis=1)
    return np.stack([grey / grey.sum(), bright / bright.sum()], axis=1)


def camera_batch(model, cameras, images=None):
    """Torch tensors of the camera matrices (and cues, from `images` (b, 3, h, w), when the model
    reads them) of a batch, float32 as candle computes them."""
    moment = model.wiener.moment.double().numpy()
    mats = [camera_matrices(moment, c, model.camera_coords) for c in cameras]
    cam = {k: torch.from_numpy(np.stack([m[k] for m in mats]).astype(np.float32)) for k in mats[0]}
    if model.illumination_cues:
        cues = [illumination_cues(img) for img in np.asarray(images)]
        cam["cues"] = torch.from_numpy(np.stack(cues).astype(np.float32))
    return cam


def camera_on_grid(csv_path, wavelengths):
    """A camera CSV (wavelength,r,g,b) linearly interpolated onto `wavelengths`, zero outside
    its table, each row scaled to sum to 1 (candle's CameraResponse::on_grid)."""
    table = np.loadtxt(csv_path, delimiter=",", skiprows=1)
    c = np.stack([np.interp(wavelengths, table[:, 0], table[:, k], left=0.0, right=0.0)
                  for k in (1, 2, 3)])
    return c / c.sum(axis=1, keepdims=True)


def candle_state_dict(model):
    """The state dict candle reads: everything but BatchNorm's `num_batches_tracked`. Copies,
    so a later train-mode forward (which updates running statistics in place) leaves it be."""
    return {
        name: t.detach().clone().contiguous()
        for name, t in model.state_dict().items()
        if not name.endswith("num_batches_tracked")
    }


def load_weights(model, path):
    """Load safetensors written for candle: every tensor must match, none may be left over."""
    weights = load_file(path)
    expected = candle_state_dict(model)
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, t in weights.items():
        if t.shape != expected[name].shape:
            raise ValueError(f"{path}: {name} has shape {tuple(t.shape)}, "
                             f"the model needs {tuple(expected[name].shape)}")
    model.load_state_dict(weights, strict=False)  # strict=False only for num_batches_tracked


def read_card_config(model_path):
    """The `config` object of the model card `NAME.json` beside `NAME.safetensors`."""
    card_path = os.path.splitext(model_path)[0] + ".json"
    if not os.path.isfile(card_path):
        fail(f"model card {card_path} not found (it must sit beside the weights)")
    with open(card_path) as f:
        card = json.load(f)
    config = card.get("config")
    keys = ("bands", "width", "depth", "dropout")
    if not isinstance(config, dict) or any(k not in config for k in keys):
        fail(f"{card_path}: needs \"config\": {{{', '.join(keys)}}}, found {config!r}")
    picked = {k: config[k] for k in keys}
    picked["linear_prior"] = bool(config.get("linear_prior", False))
    picked["intensity_normalised"] = bool(config.get("intensity_normalised", False))
    picked["camera_aware"] = bool(config.get("camera_aware", False))
    picked["camera_coords"] = int(config.get("camera_coords", 6))
    picked["illumination_cues"] = bool(config.get("illumination_cues", False))
    return picked


def build_model(config):
    return Mscnn(int(config["bands"]), int(config["width"]), int(config["depth"]),
                 float(config["dropout"]), bool(config.get("linear_prior", False)),
                 bool(config.get("intensity_normalised", False)),
                 bool(config.get("camera_aware", False)), int(config.get("camera_coords", 6)),
                 bool(config.get("illumination_cues", False)))


# The camera `reconstruct` assumes for a camera-aware model when none is named.
CANON_CSV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets", "cameras",
                         "canon_eos_5d_mark_ii.csv")
GRID = np.arange(400, 701, 10, dtype=np.float64)


def canon_batch(model, images):
    """Camera matrices of the Canon for every image of (b, 3, h, w) `images` (None for a
    one-camera model)."""
    if not model.camera_aware:
        return None
    canon = camera_on_grid(CANON_CSV, GRID)
    return camera_batch(model, [canon] * len(images), images)


# ---------------------------------------------------------------------------------------------
# Agreement and timing.
# ---------------------------------------------------------------------------------------------


def fail(message, status=2):
    print(f"pytorch_parity: {message}", file=sys.stderr)
    sys.exit(status)


def test_image(seed):
    """Seeded linear RGB in [0, 1], (rows, cols, 3) float32: the layout `reconstruct` reads."""
    return np.random.default_rng(seed).random((IMAGE_ROWS, IMAGE_COLS, 3), dtype=np.float32)


def torch_forward(model, image_hwc):
    """Eval forward of an (H, W, 3) image, returned as (H, W, bands) like `reconstruct`'s .npy."""
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(image_hwc).permute(2, 0, 1).unsqueeze(0).contiguous()
        y = model(x, canon_batch(model, x.numpy()))[0].permute(1, 2, 0).numpy()
        # candle's reconstruct clips radiance at zero
        return np.maximum(y, 0.0)


def candle_reconstruct(binary, model_path, image_hwc, env, device="cpu"):
    with tempfile.TemporaryDirectory() as tmp:
        rgb_path, out_path = os.path.join(tmp, "rgb.npy"), os.path.join(tmp, "cube.npy")
        np.save(rgb_path, image_hwc)
        run([binary, "reconstruct", rgb_path, "--method", "mscnn", "--model", model_path,
             "--device", device, "-o", out_path], env)
        return np.load(out_path)


def run(command, env):
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"`{' '.join(command)}` exited with {done.returncode}:\n{done.stderr.strip()}")
    return done.stdout


def candle_timings(binary, model_path, repeats, env, device="cpu"):
    stdout = run([binary, "bench", "recon", "--suite", "parity", "--model", model_path,
                  "--repeats", str(repeats), "--device", device, "--json"], env)
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        fail("`bench recon --suite parity` printed nothing")
    try:
        report = json.loads(lines[-1])
        return report, [float(v) for v in report["forward_ms"]], [
            float(v) for v in report["train_step_ms"]]
    except (ValueError, KeyError, TypeError) as err:
        fail(f"`bench recon --suite parity`: last line is not the expected JSON ({err}): "
             f"{lines[-1][:200]}")


def on_device(cam, device):
    """A camera batch (dict of tensors, or None) moved to `device`."""
    return None if cam is None else {k: v.to(device) for k, v in cam.items()}


def synchronise(device):
    """Wait for `device` to finish what was queued (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def torch_forward_timings(model, repeats, generator, device=torch.device("cpu")):
    """`repeats` eval forwards of one image under `torch.no_grad()`, after one warm-up, on
    `device` (each timed to the device's finish)."""
    image = torch.rand(1, 3, IMAGE_ROWS, IMAGE_COLS, generator=generator)
    model.eval()
    net = model if device.type == "cpu" else build_model_like(model).to(device).eval()
    forward_ms = []
    # candle's bench gives a camera-aware model the Canon and a neutral picture's cues
    cam = canon_batch(model, image.numpy())
    if cam is not None and "cues" in cam:
        cam["cues"] = torch.full_like(cam["cues"], 1.0 / 3.0)
    image, cam = image.to(device), on_device(cam, device)
    with torch.no_grad():
        for i in range(repeats + 1):
            start = time.perf_counter()
            net(image, cam)
            synchronise(device)
            if i > 0:  # the first is the warm-up
                forward_ms.append(1e3 * (time.perf_counter() - start))
    return forward_ms


def torch_train_timings(model, repeats, generator, device=torch.device("cpu")):
    """`repeats` train steps after one warm-up, on a copy so that `model` keeps the file's
    weights, on `device`. Each step: forward, L1 loss, backward, AdamW update."""
    trainee = build_model_like(model).to(device)
    trainee.train()
    optimiser = torch.optim.AdamW(trainee.parameters(), lr=LEARNING_RATE,
                                  weight_decay=WEIGHT_DECAY)
    bands = model.out.out_channels
    train_step_ms = []
    cam = on_device(canon_batch(model, np.full((TRAIN_BATCH, 3, 1, 1), 1.0 / 3.0)), device)
    for i in range(repeats + 1):
        rgb = torch.rand((TRAIN_BATCH, 3, TRAIN_SIDE, TRAIN_SIDE), generator=generator).to(device)
        target = torch.rand((TRAIN_BATCH, bands, TRAIN_SIDE, TRAIN_SIDE),
                            generator=generator).to(device)
        synchronise(device)
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss = F.l1_loss(trainee(rgb, cam), target)
        loss.backward()
        optimiser.step()
        synchronise(device)
        if i > 0:
            train_step_ms.append(1e3 * (time.perf_counter() - start))
    return train_step_ms


OP_SHAPE = (8, 32, 64, 64)


def torch_op_timings(repeats, generator):
    """The single ops `bench recon` times on the same shapes: 32->32 3x3 convolution (padding 1)
    on 8x32x64x64 (forward, input gradient, weight gradient) and LeakyReLU(0.2), each after
    one warm-up, in milliseconds."""
    x = torch.rand(OP_SHAPE, generator=generator) * 2 - 1
    w = (torch.rand((32, 32, 3, 3), generator=generator) * 2 - 1) * 0.1
    g = torch.rand(OP_SHAPE, generator=generator) * 2 - 1
    ops = {
        "conv2d_forward": lambda: F.conv2d(x, w, padding=1),
        "conv2d_input_grad": lambda: torch.nn.grad.conv2d_input(x.shape, w, g, padding=1),
        "conv2d_weight_grad": lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, padding=1),
        "leaky_relu": lambda: F.leaky_relu(x, 0.2),
    }
    timings = {}
    with torch.no_grad():
        for name, op in ops.items():
            runs = []
            for i in range(repeats + 1):
                start = time.perf_counter()
                op()
                if i > 0:
                    runs.append(1e3 * (time.perf_counter() - start))
            timings[name] = runs
    return timings


def candle_op_medians(report):
    """op name -> {path: median ms} from `bench recon --suite parity`'s `ops` object."""
    ops = report.get("ops") or {}
    out = {}
    for path, entries in (ops.get("conv") or {}).items():
        for name, entry in entries.items():
            out.setdefault(name, {})[path] = entry.get("median_ms")
    leaky = ops.get("leaky_relu") or {}
    out["leaky_relu"] = {"ours": leaky.get("ours_median_ms"),
                         "candle_stock": leaky.get("candle_stock_median_ms")}
    return out


def build_model_like(model):
    twin = Mscnn(model.out.out_channels, model.out.in_channels, model.depth,
                 model.unet.inc.drop.p, model.prior is not None, model.intensity_normalised,
                 model.camera_aware, model.camera_coords, model.illumination_cues)
    twin.load_state_dict(model.state_dict())
    return twin


def peak_rss_mb():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_or_none(values):
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def init_model(path, config_text, seed):
    """Write seeded random weights and a minimal card, for trying the benchmark without a
    trained model. Batch-norm statistics and affine terms are randomised too."""
    bands, width, depth, dropout = config_text.split(",")
    config = {"bands": int(bands), "width": int(width), "depth": int(depth),
              "dropout": float(dropout)}
    torch.manual_seed(seed)
    model = build_model(config)
    randomise_batch_norm(model)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(candle_state_dict(model), path)
    card = {"architecture": "mscnn", "config": config,
            "note": f"random weights from bench/pytorch_parity.py --init-model (seed {seed})"}
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(card, f, indent=2)
    print(f"wrote {path} and its card", file=sys.stderr)


def randomise_batch_norm(model):
    """Non-trivial running statistics and affine terms, so a mix-up of mean, variance, weight
    and bias cannot go unseen."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/mscnn.safetensors",
                        help="weights; the card NAME.json beside them gives the config")
    parser.add_argument("--bin", default="target/release/spectral-studio",
                        help="the spectral-studio binary (build with cargo build --release)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for both engines (default: all CPUs)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of each measurement per round and engine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-only", action="store_true",
                        help="skip everything that needs the binary (agreement, candle timings)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where both engines run the model (cuda: a CUDA build of the binary; "
                             "the single-op timings are CPU-only and are skipped)")
    parser.add_argument("--init-model", metavar="PATH",
                        help="write random weights and a card to PATH, then exit")
    parser.add_argument("--config", default="31,16,3,0.2",
                        help="bands,width,depth,dropout for --init-model")
    args = parser.parse_args()

    if args.init_model:
        init_model(args.init_model, args.config, args.seed)
        return 0
    if not os.path.isfile(args.model):
        fail(f"model {args.model} not found (train one, or pass --model PATH)")
    if not args.torch_only and not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
        fail(f"binary {args.bin} not found: run `cargo build --release` or pass --bin PATH "
             "(or --torch-only)")
    if args.rounds < 1 or args.repeats < 1 or args.threads < 1:
        fail("--rounds, --repeats and --threads must be at least 1")

    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: this PyTorch sees no CUDA device")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    config = read_card_config(args.model)
    model = build_model(config)
    try:
        load_weights(model, args.model)
    except ValueError as err:
        fail(str(err))

    image = test_image(args.seed)
    expected = torch_forward(model, image)
    max_abs_diff, tolerance = None, RELATIVE_TOLERANCE * float(np.abs(expected).max())
    if not args.torch_only:
        got = candle_reconstruct(args.bin, args.model, image, env, args.device)
        if got.shape != expected.shape:
            fail(f"reconstruct wrote shape {got.shape}, PyTorch gives {expected.shape}", 1)
        max_abs_diff = float(np.abs(got.astype(np.float32) - expected).max())
        print(f"agreement: max |candle - torch| = {max_abs_diff:.3g} "
              f"(tolerance {tolerance:.3g})", file=sys.stderr)

    candle_forward, candle_train, torch_forward_all, torch_train = [], [], [], []
    candle_ops, torch_ops = {}, {}
    candle_threads, torch_forward_peak_mb = None, None
    for round_index in range(args.rounds):
        if not args.torch_only:
            report, forward_ms, train_ms = candle_timings(args.bin, args.model, args.repeats, env,
                                                          args.device)
            candle_forward += forward_ms
            candle_train += train_ms
            candle_threads = report.get("threads", candle_threads)
            for name, paths in candle_op_medians(report).items():
                for path, value in paths.items():
                    if value is not None:
                        candle_ops.setdefault(name, {}).setdefault(path, []).append(value)
        generator = torch.Generator().manual_seed(args.seed + 1 + round_index)
        forward_ms = torch_forward_timings(model, args.repeats, generator, device)
        if torch_forward_peak_mb is None:
            # Before any train step: the process's peak so far is library + model + inference.
            torch_forward_peak_mb = round(peak_rss_mb(), 1)
        train_ms = torch_train_timings(model, args.repeats, generator, device)
        if device.type == "cpu":
            for name, runs in torch_op_timings(args.repeats, generator).items():
                torch_ops.setdefault(name, []).extend(runs)
        torch_forward_all += forward_ms
        torch_train += train_ms
        print(f"round {round_index + 1}/{args.rounds}: torch forward "
              f"{statistics.median(forward_ms):.1f} ms, train step "
              f"{statistics.median(train_ms):.1f} ms", file=sys.stderr)

    # Per op: the median over rounds of candle's per-round medians, PyTorch's median over all
    # runs, and candle / PyTorch for each candle path (ours, im2col, candle_stock).
    ops = {}
    for name, runs in torch_ops.items():
        torch_ms = median_or_none(runs)
        entry = {"torch_ms": torch_ms}
        for path, values in candle_ops.get(name, {}).items():
            entry[f"{path}_ms"] = median_or_none(values)
            entry[f"{path}_ratio"] = ratio(median_or_none(values), torch_ms)
        ops[name] = entry

    summary = {
        "max_abs_diff": max_abs_diff,
        "tolerance": tolerance,
        "forward_ratio": ratio(median_or_none(candle_forward), median_or_none(torch_forward_all)),
        "train_step_ratio": ratio(median_or_none(candle_train), median_or_none(torch_train)),
        "candle_forward_ms": median_or_none(candle_forward),
        "torch_forward_ms": median_or_none(torch_forward_all),
        "candle_train_step_ms": median_or_none(candle_train),
        "torch_train_step_ms": median_or_none(torch_train),
        "ops_8x32x64x64": ops,
        "device": args.device,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": args.threads,
        "candle_threads": candle_threads,
        "torch_version": torch.__version__,
        "torch_forward_peak_rss_mb": torch_forward_peak_mb,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "config": config,
        "image": [IMAGE_ROWS, IMAGE_COLS],
        "ok": None if max_abs_diff is None else bool(max_abs_diff <= tolerance),
    }
    print(json.dumps(summary))
    return 1 if summary["ok"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
