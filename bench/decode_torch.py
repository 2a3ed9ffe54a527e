# PyTorch CPU anchor for bench/decode.ts: decodes the same FleetLM architecture specs with a KV cache
# (random weights, greedy), so the ONNX runtime's figures have a side-by-side reference.
# Needs Debian's python3-torch: apt-get install -y python3-torch libopenblas0-pthread
# Run: python3 bench/decode_torch.py --spec spec.json [--spec ...] --tokens 64 --prompt 32 --threads 2 [--quantize int8]
# Llama-family specs (rmsnorm, rotary, swiglu, GQA) are built too; --quantize int8 applies
# torch.quantization.quantize_dynamic to every nn.Linear (the tied head included).
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


class RMSNorm(nn.Module):
    """x / rms(x) * weight (torch 1.13 has no nn.RMSNorm)."""

    def __init__(self, width, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class LlamaLayer(nn.Module):
    """RMSNorm, rotary (Hugging Face rotate_half), grouped-query attention, SwiGLU (docs/LLAMA-NAMES)."""

    def __init__(self, width, heads, kv_heads, head_dim, ffn, eps, theta, qkv_bias, out_bias):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.ln1 = RMSNorm(width, eps)
        self.q = nn.Linear(width, heads * head_dim, bias=qkv_bias)
        self.k = nn.Linear(width, kv_heads * head_dim, bias=qkv_bias)
        self.v = nn.Linear(width, kv_heads * head_dim, bias=qkv_bias)
        self.o = nn.Linear(heads * head_dim, width, bias=out_bias)
        self.ln2 = RMSNorm(width, eps)
        self.gate = nn.Linear(width, ffn, bias=out_bias)
        self.up = nn.Linear(width, ffn, bias=out_bias)
        self.down = nn.Linear(ffn, width, bias=out_bias)
        self.inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)

    def forward(self, x, past, start):
        b, s, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        angle = torch.arange(start, start + s, dtype=torch.float32)[:, None] * self.inv_freq[None]
        cos, sin = torch.cat([angle, angle], -1).cos(), torch.cat([angle, angle], -1).sin()
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        rep = self.heads // self.kv_heads
        kk, vv = (k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)) if rep > 1 else (k, v)
        scores = torch.matmul(q, kk.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if s > 1:
            total = kk.shape[2]
            mask = torch.ones(s, total, dtype=torch.bool).triu(total - s + 1)
            scores = scores.masked_fill(mask, float('-inf'))
        att = torch.matmul(F.softmax(scores, dim=-1), vv).transpose(1, 2).reshape(b, s, -1)
        x = x + self.o(att)
        y = self.ln2(x)
        x = x + self.down(F.silu(self.gate(y)) * self.up(y))
        return x, (k, v)


class Decoder(nn.Module):
    """A FleetLM ArchSpec (models/arch/spec.ts) as a PyTorch module."""

    def __init__(self, spec):
        super().__init__()
        blocks = spec['blocks']
        e_emb = spec.get('embeddingWidth') or blocks[0]['width']
        eps = spec.get('layerNormEpsilon', 1e-5)
        self.offset = spec.get('positionOffset', 0)
        self.rotary = spec.get('positions', 'learned') == 'rotary'
        theta = spec.get('ropeTheta', 10000)
        self.tok = nn.Embedding(spec['vocabSize'], e_emb)
        self.pos = None if self.rotary else nn.Embedding(spec['contextLength'] + self.offset, e_emb)
        self.project_in = nn.Linear(e_emb, blocks[0]['width'], bias=False) if e_emb != blocks[0]['width'] else None
        self.layers = []
        self.between = nn.ModuleList()
        modules = nn.ModuleList()
        prev = blocks[0]['width']
        for blk in blocks:
            proj = nn.Linear(prev, blk['width']) if blk['width'] != prev else None
            ffn = blk.get('ffnHidden') or round(blk['ffnRatio'] * blk['width'])
            if blk.get('mlp') == 'swiglu':
                make = lambda: LlamaLayer(blk['width'], blk['heads'], blk.get('kvHeads') or blk['heads'], blk.get('headDim', 64), ffn, eps, theta,
                                          blk.get('qkvBias', True), blk.get('outputBias', True))
            else:
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
        self.ln_f = RMSNorm(prev, eps) if blocks[-1].get('norm') == 'rmsnorm' else nn.LayerNorm(prev, eps=eps)
        self.project_out = nn.Linear(prev, e_emb, bias=False) if spec.get('tiedHead', True) and prev != e_emb else None
        # A tied head is a Linear sharing the embedding's weight, so quantize_dynamic quantizes it too.
        self.head = nn.Linear(e_emb if spec.get('tiedHead', True) else prev, spec['vocabSize'], bias=False)
        if spec.get('tiedHead', True):
            self.head.weight = self.tok.weight

    def forward(self, ids, past, start):
        x = self.tok(ids)
        if self.pos is not None:
            x = x + self.pos(torch.arange(start, start + ids.shape[1]) + self.offset)[None]
        if self.project_in is not None:
            x = self.project_in(x)
        present = []
        for i, (proj, layer) in enumerate(self.layers):
            if proj is not None:
                x = proj(x)
            p = None if past is None else past[i]
            x, kv = layer(x, p, start) if isinstance(layer, LlamaLayer) else layer(x, p)
            present.append(kv)
        x = self.ln_f(x[:, -1:])
        if self.project_out is not None:
            x = self.project_out(x)
        logits = self.head(x)
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


def measure(spec, tokens, prompt_len, repeats, quantize):
    torch.manual_seed(0)
    model = Decoder(spec).eval()
    with torch.no_grad():
        for p in model.parameters():
            nn.init.normal_(p, std=0.02)
    if quantize == 'int8':
        # Dynamic int8: int8 weights, activations quantized per call. Debian's torch has no fbgemm;
        # onednn is its x86 int8 engine (qnnpack targets ARM).
        engines = torch.backends.quantized.supported_engines
        torch.backends.quantized.engine = next(e for e in ('fbgemm', 'onednn', 'x86', 'qnnpack') if e in engines)
        model = torch.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
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
    ap.add_argument('--quantize', choices=['none', 'int8'], default='none')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.spec:
        with open(path) as f:
            spec = json.load(f)
        runs = measure(spec, args.tokens, args.prompt, args.repeats, args.quantize)
        tps = sorted(r[1] for r in runs)
        print(json.dumps({
            'name': spec.get('name'),
            'torch': torch.__version__,
            'quantize': args.quantize,
            'engine': torch.backends.quantized.engine if args.quantize != 'none' else None,
            'threads': args.threads,
            'firstTokenMs': [r[0] for r in runs],
            'tokensPerSecond': [r[1] for r in runs],
            'tokensPerSecondMedian': tps[len(tps) // 2],
            'tokensPerSecondBest': tps[-1],
            'maxRssMiB': peak_rss_mib(),
        }), flush=True)


if __name__ == '__main__':
    main()
