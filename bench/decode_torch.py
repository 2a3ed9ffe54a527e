# PyTorch CPU anchor for bench/decode.ts: decodes the same FleetLM architecture specs with a KV cache
# (random weights, greedy), so the ONNX runtime's figures have a side-by-side reference.
# Needs Debian's python3-torch: apt-get install -y python3-torch libopenblas0-pthread
# Run: python3 bench/decode_torch.py --spec spec.json [--spec ...] --tokens 64 --prompt 32 --threads 2
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Layer(nn.Module):
    """Pre-LayerNorm transformer layer with separate Q/K/V projections (E -> heads*headDim)."""

    def __init__(self, width, heads, head_dim, ffn, eps):
        super().__init__()
        a = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.ln1 = nn.LayerNorm(width, eps=eps)
        self.q = nn.Linear(width, a)
        self.k = nn.Linear(width, a)
        self.v = nn.Linear(width, a)
        self.o = nn.Linear(a, width)
        self.ln2 = nn.LayerNorm(width, eps=eps)
        self.fc1 = nn.Linear(width, ffn)
        self.fc2 = nn.Linear(ffn, width)

    def forward(self, x, past):
        b, s, _ = x.shape
        h = self.ln1(x)
        split = lambda t: t.view(b, s, self.heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if s > 1:
            total = k.shape[2]
            mask = torch.ones(s, total, dtype=torch.bool).triu(total - s + 1)
            scores = scores.masked_fill(mask, float('-inf'))
        att = torch.matmul(F.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, s, -1)
        x = x + self.o(att)
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate='tanh'))
        return x, (k, v)


class Decoder(nn.Module):
    """A FleetLM ArchSpec (models/arch/spec.ts) as a PyTorch module."""

    def __init__(self, spec):
        super().__init__()
        blocks = spec['blocks']
        e_emb = spec.get('embeddingWidth') or blocks[0]['width']
        eps = spec.get('layerNormEpsilon', 1e-5)
        self.offset = spec.get('positionOffset', 0)
        self.tok = nn.Embedding(spec['vocabSize'], e_emb)
        self.pos = nn.Embedding(spec['contextLength'] + self.offset, e_emb)
        self.project_in = nn.Linear(e_emb, blocks[0]['width'], bias=False) if e_emb != blocks[0]['width'] else None
        self.layers = []
        self.between = nn.ModuleList()
        modules = nn.ModuleList()
        prev = blocks[0]['width']
        for blk in blocks:
            proj = nn.Linear(prev, blk['width']) if blk['width'] != prev else None
            ffn = round(blk['ffnRatio'] * blk['width'])
            make = lambda: Layer(blk['width'], blk['heads'], blk.get('headDim', 64), ffn, eps)
            shared = make() if blk.get('shareWeights') else None
            for i in range(blk['layers']):
                layer = shared if shared is not None else make()
                modules.append(layer)
                self.layers.append((proj if i == 0 else None, layer))
            if proj is not None:
                self.between.append(proj)
            prev = blk['width']
        self.modules_ = modules
        self.ln_f = nn.LayerNorm(prev, eps=eps)
        self.project_out = nn.Linear(prev, e_emb, bias=False) if spec.get('tiedHead', True) and prev != e_emb else None
        self.head = None if spec.get('tiedHead', True) else nn.Linear(prev, spec['vocabSize'], bias=False)

    def forward(self, ids, past, start):
        positions = torch.arange(start, start + ids.shape[1]) + self.offset
        x = self.tok(ids) + self.pos(positions)[None]
        if self.project_in is not None:
            x = self.project_in(x)
        present = []
        for i, (proj, layer) in enumerate(self.layers):
            if proj is not None:
                x = proj(x)
            x, kv = layer(x, None if past is None else past[i])
            present.append(kv)
        x = self.ln_f(x[:, -1:])
        if self.project_out is not None:
            x = self.project_out(x)
        logits = self.head(x) if self.head is not None else torch.matmul(x, self.tok.weight.t())
        return logits, present


def peak_rss_mib():
    """VmHWM of this process (Linux); getrusage's maxrss can carry a spawning parent's high-water mark."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec, tokens, prompt_len, repeats):
    torch.manual_seed(0)
    model = Decoder(spec).eval()
    for p in model.parameters():
        nn.init.normal_(p, std=0.02)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, spec['vocabSize'], (1, prompt_len), generator=g)
    results = []
    with torch.inference_mode():
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            logits, past = model(prompt, None, 0)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            first = time.perf_counter()
            for i in range(1, tokens):
                logits, past = model(nxt, past, prompt_len + i - 1)
                nxt = logits[:, -1].argmax(-1, keepdim=True)
            end = time.perf_counter()
            if r > 0:  # the first round warms up allocator and BLAS
                results.append(((first - t0) * 1000, (tokens - 1) / (end - first)))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--spec', action='append', required=True, help='FleetLM arch spec JSON file (repeatable)')
    ap.add_argument('--tokens', type=int, default=64)
    ap.add_argument('--prompt', type=int, default=32)
    ap.add_argument('--repeats', type=int, default=2)
    ap.add_argument('--threads', type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.spec:
        with open(path) as f:
            spec = json.load(f)
        runs = measure(spec, args.tokens, args.prompt, args.repeats)
        tps = sorted(r[1] for r in runs)
        print(json.dumps({
            'name': spec.get('name'),
            'torch': torch.__version__,
            'threads': args.threads,
            'firstTokenMs': [r[0] for r in runs],
            'tokensPerSecond': [r[1] for r in runs],
            'tokensPerSecondMedian': tps[len(tps) // 2],
            'tokensPerSecondBest': tps[-1],
            'maxRssMiB': peak_rss_mib(),
        }), flush=True)


if __name__ == '__main__':
    main()
