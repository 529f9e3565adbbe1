"""The gene classifier of kgf-step (pipeline/src/model.rs) in PyTorch, trained the way
`kgf-step train-gc` trains it, for a side-by-side throughput benchmark (pipeline/bench/gc-vs-pytorch.sh,
pipeline/gpu-check.sh). Not part of the pipeline.

Same architecture and step: the read-level encoder over a read's k-mer ids (learned k-mer
embeddings, no absolute positions, layer norm eps 1e-12, dropout after the embeddings), post-norm
encoder layers whose attention is local (query i sees the keys within `window` positions: a band
mask; dropout on the attention probabilities, after the attention output and the feed-forward,
erf GELU), a linear head at every position; class-weighted cross-entropy over every position;
AdamW; global gradient-norm clipping. Each step's reads get sequencer substitutions afresh at the
dataset's error rate, as kgf-step's do. Prints one line `RESULT {json}` with the reads per second
of the training steps alone.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class Layer(nn.Module):
    def __init__(self, h, heads, inter, p):
        super().__init__()
        self.heads, self.p = heads, p
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
        self.attn_norm = nn.LayerNorm(h, eps=1e-12)
        self.ff_in, self.ff_out = nn.Linear(h, inter), nn.Linear(inter, h)
        self.ff_norm = nn.LayerNorm(h, eps=1e-12)

    def forward(self, x, band):
        b, s, h = x.shape
        d = h // self.heads

        def split(t):
            return t.view(b, s, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=band, dropout_p=self.p if self.training else 0.0
        )
        ctx = ctx.transpose(1, 2).reshape(b, s, h)
        x = self.attn_norm(x + F.dropout(self.o(ctx), self.p, self.training))
        ff = self.ff_out(F.gelu(self.ff_in(x)))
        return self.ff_norm(x + F.dropout(ff, self.p, self.training))


class GeneClassifier(nn.Module):
    def __init__(self, vocab, positions, window, classes, h, layers, heads, inter, p):
        super().__init__()
        self.p = p
        self.word = nn.Embedding(vocab, h)
        self.emb_norm = nn.LayerNorm(h, eps=1e-12)
        self.layers = nn.ModuleList(Layer(h, heads, inter, p) for _ in range(layers))
        self.head = nn.Linear(h, classes)
        i = torch.arange(positions)
        # True where attention is allowed: |i - j| <= window.
        self.register_buffer("band", (i[:, None] - i[None, :]).abs() <= window)
        for m in self.modules():  # BERT's initialisation, as model.rs
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, ids):
        x = F.dropout(self.emb_norm(self.word(ids)), self.p, self.training)
        for layer in self.layers:
            x = layer(x, self.band)
        return self.head(x)


def with_substitutions(tokens, k, rate, rng):
    """Each base of each read replaced by another with probability `rate`, as kgf-step's
    gc::with_substitutions: the bases from the k-mer ids, then the ids again."""
    v = tokens.astype(np.int64) - 5
    first = np.stack([(v[:, 0] // 5 ** (k - 1 - i)) % 5 for i in range(k)], axis=1)
    bases = np.concatenate([first, v[:, 1:] % 5], axis=1)
    hit = rng.random(bases.shape) < rate
    # Another of A, T, C, G (codes 0..3): add 1..3 modulo 4 (an N stays an N).
    shift = rng.integers(1, 4, size=bases.shape)
    bases = np.where(hit & (bases < 4), (bases + shift) % 4, bases)
    n = tokens.shape[1]
    ids = np.zeros_like(v)
    for i in range(k):
        ids = ids * 5 + bases[:, i : i + n]
    return ids + 5


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a `kgf-step dataset` output directory")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--limit", type=int, help="first N GC fragments of the train split")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=512)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast the forward pass to bfloat16")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    dev = torch.device(a.device)
    labels = json.load(open(os.path.join(a.data, "labels", "labels.json")))
    k, rate = labels["k"], labels["config"]["reads"]["error_rate"]
    rows = np.load(os.path.join(a.data, "train", "gc.npy"))
    if a.limit:
        rows = rows[: a.limit]
    tokens = rows["tokens"]
    y_read = rows["label"].astype(np.int64)
    n, positions = tokens.shape
    classes = len(labels["genes"])
    counts = np.bincount(y_read, minlength=classes)
    weight = np.where(counts > 0, n / (classes * np.maximum(counts, 1)), 0.0)

    model = GeneClassifier(
        labels["vocab_size"], positions, a.window, classes, a.hidden, a.layers, a.heads,
        a.intermediate, a.dropout,
    ).to(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    w = torch.tensor(weight, dtype=torch.float32, device=dev)
    order = rng.permutation(n)

    def step(i):
        idx = order[(i * a.batch_size) % n :][: a.batch_size]
        ids = torch.from_numpy(with_substitutions(tokens[idx], k, rate, rng)).to(dev)
        y = torch.from_numpy(np.repeat(y_read[idx], positions)).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(ids)
        loss = F.cross_entropy(logits.float().reshape(-1, classes), y, weight=w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        return loss.item(), len(idx)

    seen = 0
    started = time.perf_counter()
    for i in range(a.steps):
        loss, b = step(i)
        seen += b
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - started
    print(
        "RESULT "
        + json.dumps(
            {
                "framework": "pytorch",
                "torch": torch.__version__,
                "device": a.device,
                "bf16": a.bf16,
                "threads": torch.get_num_threads(),
                "steps": a.steps,
                "reads": seen,
                "seconds": secs,
                "reads_per_s": seen / secs,
                "last_loss": loss,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
