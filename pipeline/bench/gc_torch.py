"""The gene classifier of kgf-step (pipeline/src/model.rs) in PyTorch, trained the way
`kgf-step train-gc` trains it, for a side-by-side throughput benchmark (pipeline/bench/gc-vs-pytorch.sh,
pipeline/gpu-check.sh). Not part of the pipeline.

Same architecture and step: BERT-style post-norm encoder over [CLS] + `words` k-mer ids + [SEP]
(learned word and position embeddings, layer norm eps 1e-12, erf GELU, dropout after the
embeddings, on the attention probabilities, after the attention output and the feed-forward),
tanh pooler over [CLS], dropout, linear head (past its attention, the last layer runs on the
[CLS] row alone, as in model.rs: the other rows reach nothing); class-weighted cross-entropy;
AdamW; global gradient-norm clipping. The batch is built from the split file inside each step,
as kgf-step does. Prints one line `RESULT {json}` with the sentences per second of the training
steps alone.
"""

import argparse
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

CLS, SEP = 2, 3


class Layer(nn.Module):
    def __init__(self, h, heads, inter, p):
        super().__init__()
        self.heads, self.p = heads, p
        self.q, self.k, self.v, self.o = (nn.Linear(h, h) for _ in range(4))
        self.attn_norm = nn.LayerNorm(h, eps=1e-12)
        self.ff_in, self.ff_out = nn.Linear(h, inter), nn.Linear(inter, h)
        self.ff_norm = nn.LayerNorm(h, eps=1e-12)

    def forward(self, x, sdpa, cls_only=False):
        b, s, h = x.shape
        d = h // self.heads

        def split(t):
            return t.view(b, s, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if sdpa:
            ctx = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.p if self.training else 0.0
            )
        else:
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
            ctx = F.dropout(att, self.p, self.training) @ v
        ctx = ctx.transpose(1, 2).reshape(b, s, h)
        if cls_only:  # the last layer past its attention: only [CLS] reaches the pooler
            x, ctx = x[:, :1], ctx[:, :1]
        x = self.attn_norm(x + F.dropout(self.o(ctx), self.p, self.training))
        ff = self.ff_out(F.gelu(self.ff_in(x)))
        return self.ff_norm(x + F.dropout(ff, self.p, self.training))


class GeneClassifier(nn.Module):
    def __init__(self, vocab, seq_len, classes, h, layers, heads, inter, p):
        super().__init__()
        self.p = p
        self.word = nn.Embedding(vocab, h)
        self.pos = nn.Embedding(seq_len, h)
        self.emb_norm = nn.LayerNorm(h, eps=1e-12)
        self.layers = nn.ModuleList(Layer(h, heads, inter, p) for _ in range(layers))
        self.pooler = nn.Linear(h, h)
        self.head = nn.Linear(h, classes)
        for m in self.modules():  # BERT's initialisation, as model.rs
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, ids, sdpa=False):
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = F.dropout(self.emb_norm(self.word(ids) + self.pos(pos)), self.p, self.training)
        for i, layer in enumerate(self.layers):
            x = layer(x, sdpa, cls_only=i == len(self.layers) - 1)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.head(F.dropout(pooled, self.p, self.training))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a `kgf-step dataset` output directory")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--limit", type=int, help="first N GC fragments of the train split")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast the forward pass to bfloat16")
    ap.add_argument("--sdpa", action="store_true", help="fused scaled_dot_product_attention")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    labels = json.load(open(os.path.join(a.data, "labels", "labels.json")))
    words = labels["words"]
    rows = np.load(os.path.join(a.data, "train", "gc.npy"))
    if a.limit:
        rows = rows[: a.limit]
    tokens = rows["tokens"].astype(np.int64)
    y_read = rows["label"].astype(np.int64)
    per_read = tokens.shape[1] - words + 1
    # Every sentence of every fragment, as model.rs's push_sentence builds them.
    windows = np.lib.stride_tricks.sliding_window_view(tokens, words, axis=1)
    n = len(rows) * per_read
    classes = len(labels["genes"])
    counts = np.bincount(y_read, minlength=classes) * per_read
    weight = np.where(counts > 0, n / (classes * np.maximum(counts, 1)), 0.0)

    model = GeneClassifier(
        labels["vocab_size"], words + 2, classes, a.hidden, a.layers, a.heads,
        a.intermediate, a.dropout,
    ).to(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    w = torch.tensor(weight, dtype=torch.float32, device=dev)
    order = np.random.default_rng(a.seed).permutation(n)
    cls = np.full((a.batch_size, 1), CLS)
    sep = np.full((a.batch_size, 1), SEP)

    def step(i):
        idx = order[(i * a.batch_size) % n :][: a.batch_size]
        r, j = idx // per_read, idx % per_read
        b = len(idx)
        ids = np.concatenate([cls[:b], windows[r, j], sep[:b]], axis=1)
        ids = torch.from_numpy(ids).to(dev)
        y = torch.from_numpy(y_read[r]).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(ids, a.sdpa)
        loss = F.cross_entropy(logits.float(), y, weight=w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        return loss.item(), b

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
                "sentences": seen,
                "seconds": secs,
                "sentences_per_s": seen / secs,
                "last_loss": loss,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
