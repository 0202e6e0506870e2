"""MST++ in PyTorch, the twin of src/models/mstpp.rs, written from the paper (Cai et al.,
"MST++: Multi-stage Spectral-wise Transformer for Efficient Spectral Reconstruction", CVPRW 2022)
and the tensor names of the authors' published state_dict, so that their checkpoints, this
module's and the candle model share one set of names.

Unlike the authors' code it needs no einops: the layout changes are plain reshapes and
permutes. `MstPlusPlus()` with no arguments is the published model (1.62 M parameters).
"""

import torch
import torch.nn.functional as F
from torch import nn


class SpectralAttention(nn.Module):
    """S-MSA: attention between channels, one (d x d) matrix per head, on (b, h, w, c)."""

    def __init__(self, dim, dim_head, heads):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.to_q = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_k = nn.Linear(dim, dim_head * heads, bias=False)
        self.to_v = nn.Linear(dim, dim_head * heads, bias=False)
        self.rescale = nn.Parameter(torch.ones(heads, 1, 1))
        self.proj = nn.Linear(dim_head * heads, dim, bias=True)
        self.pos_emb = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim),
            nn.GELU(),
            nn.Conv2d(dim, dim, 3, 1, 1, bias=False, groups=dim),
        )

    def forward(self, x):
        b, h, w, c = x.shape
        flat = x.reshape(b, h * w, c)
        q_inp, k_inp, v_inp = self.to_q(flat), self.to_k(flat), self.to_v(flat)

        def heads_first(t):  # (b, n, heads*d) -> (b, heads, d, n)
            return t.reshape(b, h * w, self.heads, self.dim_head).permute(0, 2, 3, 1)

        q, k, v = heads_first(q_inp), heads_first(k_inp), heads_first(v_inp)
        q = F.normalize(q, dim=-1, p=2)
        k = F.normalize(k, dim=-1, p=2)
        attn = (k @ q.transpose(-2, -1)) * self.rescale
        attn = attn.softmax(dim=-1)
        mixed = (attn @ v).permute(0, 3, 1, 2).reshape(b, h * w, self.heads * self.dim_head)
        out_c = self.proj(mixed).view(b, h, w, c)
        out_p = self.pos_emb(v_inp.reshape(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return out_c + out_p


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, dim * mult, 1, 1, bias=False),
            nn.GELU(),
            nn.Conv2d(dim * mult, dim * mult, 3, 1, 1, bias=False, groups=dim * mult),
            nn.GELU(),
            nn.Conv2d(dim * mult, dim, 1, 1, bias=False),
        )

    def forward(self, x):  # (b, h, w, c)
        return self.net(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.fn(self.norm(x))


class AttentionBlocks(nn.Module):
    """MSAB: blocks of (attention + x, pre-norm feed-forward + x), on (b, c, h, w)."""

    def __init__(self, dim, dim_head, heads, num_blocks):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList([SpectralAttention(dim, dim_head, heads), PreNorm(dim, FeedForward(dim))])
            for _ in range(num_blocks))

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        for attn, ff in self.blocks:
            x = attn(x) + x
            x = ff(x) + x
        return x.permute(0, 3, 1, 2)


class Stage(nn.Module):
    """One single-stage spectral-wise transformer (the authors' `MST`)."""

    def __init__(self, dim=31, levels=2, num_blocks=(1, 1, 1)):
        super().__init__()
        self.levels = levels
        self.embedding = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        self.encoder_layers = nn.ModuleList()
        c = dim
        for i in range(levels):
            self.encoder_layers.append(nn.ModuleList([
                AttentionBlocks(c, dim, c // dim, num_blocks[i]),
                nn.Conv2d(c, c * 2, 4, 2, 1, bias=False),
            ]))
            c *= 2
        self.bottleneck = AttentionBlocks(c, dim, c // dim, num_blocks[-1])
        self.decoder_layers = nn.ModuleList()
        for i in range(levels):
            self.decoder_layers.append(nn.ModuleList([
                nn.ConvTranspose2d(c, c // 2, stride=2, kernel_size=2, padding=0, output_padding=0),
                nn.Conv2d(c, c // 2, 1, 1, bias=False),
                AttentionBlocks(c // 2, dim, (c // 2) // dim, num_blocks[levels - 1 - i]),
            ]))
            c //= 2
        self.mapping = nn.Conv2d(dim, dim, 3, 1, 1, bias=False)

    def forward(self, x):
        fea = self.embedding(x)
        skips = []
        for blocks, down in self.encoder_layers:
            fea = blocks(fea)
            skips.append(fea)
            fea = down(fea)
        fea = self.bottleneck(fea)
        for up, fusion, blocks in self.decoder_layers:
            fea = blocks(fusion(torch.cat([up(fea), skips.pop()], dim=1)))
        return self.mapping(fea) + x


class MstPlusPlus(nn.Module):
    def __init__(self, in_channels=3, out_channels=31, n_feat=31, stage=3, levels=2, num_blocks=(1, 1, 1)):
        super().__init__()
        self.multiple = max(2 ** levels, 8)
        self.conv_in = nn.Conv2d(in_channels, n_feat, 3, padding=1, bias=False)
        self.body = nn.Sequential(*[Stage(n_feat, levels, num_blocks) for _ in range(stage)])
        self.conv_out = nn.Conv2d(n_feat, out_channels, 3, padding=1, bias=False)

    def forward(self, x):
        _, _, h, w = x.shape
        m = self.multiple
        x = F.pad(x, [0, (m - w % m) % m, 0, (m - h % m) % m], mode="reflect")
        x = self.conv_in(x)
        y = self.conv_out(self.body(x)) + x
        return y[:, :, :h, :w]


def main():
    """Time MST++ in PyTorch against candle's `bench recon --suite parity --model FILE.pth`, on
    the same shapes and the same weights, both sides on the same number of threads:

        python bench/mstpp_torch.py --write mstpp.pth      # a published-size model, random weights
        python bench/mstpp_torch.py --model mstpp.pth --bin target/release/spectral-studio

    Prints one JSON object: each side's median forward of 1x3x482x512 (eval, no grad) and
    median training step on 8x3x64x64 (forward, L1 loss, backward, AdamW lr 1e-3 wd 1e-4),
    and candle's time over PyTorch's."""
    import argparse
    import json
    import os
    import statistics
    import subprocess
    import time

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="PATH", help="write a published-size model with random weights and stop")
    parser.add_argument("--model", default="mstpp.pth")
    parser.add_argument("--bin", default="target/release/spectral-studio")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.write:
        torch.save({"state_dict": MstPlusPlus().state_dict()}, args.write)
        print(f"wrote {args.write}")
        return
    torch.set_num_threads(args.threads)
    model = MstPlusPlus()
    state = torch.load(args.model, map_location="cpu")
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.get("state_dict", state).items()})
    generator = torch.Generator().manual_seed(0)

    def runs(fn):
        fn()  # warm-up
        out = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - start))
        return out

    image = torch.rand(1, 3, 482, 512, generator=generator)
    model.eval()
    with torch.no_grad():
        forward = runs(lambda: model(image))
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x = torch.rand(8, 3, 64, 64, generator=generator)
    y = torch.rand(8, 31, 64, 64, generator=generator)

    def step():
        optimiser.zero_grad(set_to_none=True)
        F.l1_loss(model(x), y).backward()
        optimiser.step()

    train = runs(step)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    out = subprocess.run([args.bin, "bench", "recon", "--suite", "parity", "--model", args.model, "--repeats", str(args.repeats)],
                         env=env, capture_output=True, text=True, check=True)
    candle = json.loads(out.stdout)
    torch_forward, torch_train = statistics.median(forward), statistics.median(train)
    print(json.dumps({
        "threads": args.threads,
        "torch": {"version": torch.__version__, "forward_median_ms": torch_forward, "train_step_median_ms": torch_train},
        "candle": {"forward_median_ms": candle["forward_median_ms"], "train_step_median_ms": candle["train_step_median_ms"]},
        "ratio_candle_over_torch": {"forward": candle["forward_median_ms"] / torch_forward, "train_step": candle["train_step_median_ms"] / torch_train},
    }, indent=2))


if __name__ == "__main__":
    main()
