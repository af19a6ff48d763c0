"""GPT-2 in one file, as the paper and OpenAI's released checkpoints define it.

Radford et al. 2019, section 2.3: the GPT-1 Transformer with layer norm moved to
the input of each sub-block (pre-LN), a final layer norm after the last block,
residual projections initialised with std 0.02/sqrt(2 * n_layer) ("scale the
weights of residual layers by 1/sqrt(N)"), context 1024, vocabulary 50,257.
Learned position embeddings, GELU with the tanh approximation (OpenAI's
``gelu`` in gpt-2/src/model.py), token embedding tied to the output layer.
Parameter names follow Hugging Face's GPT2LMHeadModel (with nn.Linear instead of
Conv1D), so interop is a transpose.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024  # context (GPT-2 paper: 1024)
    vocab_size: int = 50257  # GPT-2 BPE (50,000 merges + 256 bytes + <|endoftext|>)
    pad_vocab_to: int = 1  # e.g. 64: pad the embedding/output rows to a multiple, for speed
    dropout: float = 0.0
    bias: bool = True  # GPT-2 has biases in Linear layers and LayerNorms
    layer_norm_epsilon: float = 1e-5

    @property
    def padded_vocab_size(self) -> int:
        m = max(1, self.pad_vocab_to)
        return (self.vocab_size + m - 1) // m * m

    def to_dict(self) -> dict:
        return asdict(self)


# The four paper sizes (Table 2; the released checkpoints' true counts in the name)
# and small ones for CPU work.
PRESETS: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 117M in the paper, 124M counted
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 345M / 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 762M / 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1542M / 1558M
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),  # ~30M with the 50k vocab
    "tiny": dict(n_layer=2, n_head=4, n_embd=128, block_size=128),  # CPU minutes
}


def config_for(preset: str, **overrides) -> GPTConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; known: {', '.join(PRESETS)}")
    return GPTConfig(**{**PRESETS[preset], **overrides})


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        drop = self.dropout if self.training else 0.0
        if past is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        elif T == 1:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:
            # New queries at positions L-T..L-1 see every cached key and the causal part of the new ones.
            L = k.size(2)
            mask = torch.ones(T, L, dtype=torch.bool, device=x.device).tril(diagonal=L - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y)), present


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, present


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ W.T`` without the (N x vocab) logits tensor.

    Rows go through in chunks; each chunk's logits, log-sum-exp and gradient
    (softmax - one-hot) are computed in the forward pass and immediately turned
    into the gradients for ``h`` and ``W`` (as Liger-Kernel's fused linear
    cross-entropy does on GPUs). On CPU the 50k-wide logits of a batch are
    hundreds of MB. Each chunk's logits are computed transposed, (vocab x rows) =
    W @ h_chunk.T: on CPU that product runs ~1.7x faster than h_chunk @ W.T (a
    tall output instead of a wide one), and the gradient products then read it in
    their natural layout. One exp per logit (max, exp, sum, then scale), not two
    (log-sum-exp, then exp again). Exact to float rounding (the test compares loss
    and every gradient with the plain path)."""

    @staticmethod
    def forward(ctx, h, W, targets, V: int, chunk: int):
        valid = targets != -1
        n_valid = valid.sum().clamp(min=1).to(torch.float32)
        grad_h = torch.empty_like(h)
        grad_W = torch.zeros_like(W)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, h.size(0), chunk):
            hc, tc = h[s : s + chunk], targets[s : s + chunk]
            lt = torch.mm(W, hc.t()).float()  # (padded vocab, rows)
            if W.size(0) != V:
                lt[V:] = float("-inf")
            vc = tc != -1
            tgt = tc.clamp(min=0)
            cols = torch.arange(tc.size(0), device=h.device)
            picked = lt[tgt, cols]
            m = lt.amax(dim=0)
            e = lt.sub_(m).exp_()
            total = e.sum(dim=0)
            loss += ((m + total.log() - picked) * vc).sum()
            w = vc.to(torch.float32) / n_valid
            p = e.mul_((w / total)[None, :])  # softmax, weighted by 1/n_valid (0 for ignored rows)
            p[tgt, cols] -= w
            p = p.to(h.dtype)
            torch.mm(p.t(), W, out=grad_h[s : s + chunk])
            grad_W.addmm_(p, hc)
        ctx.save_for_backward(grad_h, grad_W)
        return loss / n_valid

    @staticmethod
    def backward(ctx, g):
        grad_h, grad_W = ctx.saved_tensors
        return grad_h * g, grad_W * g, None, None, None


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        V = cfg.padded_vocab_size
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(V, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                ln_f=nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon, bias=cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, V, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """All parameters, counting the tied embedding once (GPT-2 small: 124,439,808)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None, past=None, use_cache: bool = False, fused_loss: bool | None = None):
        """Logits over the real vocabulary (padding rows removed), and the mean
        cross-entropy when ``targets`` is given (-1 entries are ignored).

        ``fused_loss`` (default: when training on CPU in float32 with targets):
        the loss through ChunkedLinearCrossEntropy, and logits None."""
        B, T = idx.shape
        offset = 0 if past is None else past[0][0].size(2)
        if offset + T > self.config.block_size:
            raise ValueError(f"sequence of {offset + T} tokens exceeds the context of {self.config.block_size}")
        pos = torch.arange(offset, offset + T, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        presents = []
        for i, block in enumerate(self.transformer.h):
            x, present = block(x, None if past is None else past[i])
            if use_cache:
                presents.append(present)
        x = self.transformer.ln_f(x)
        if fused_loss is None:
            fused_loss = (targets is not None and not use_cache and torch.is_grad_enabled() and x.device.type == "cpu"
                          and not torch.is_autocast_enabled("cpu") and x.dtype == torch.float32)
        if fused_loss and targets is not None:
            h = x.reshape(-1, x.size(-1))
            loss = ChunkedLinearCrossEntropy.apply(h, self.lm_head.weight, targets.reshape(-1), self.config.vocab_size, 256)
            return None, loss
        logits = self.lm_head(x)
        V = self.config.vocab_size
        loss = None
        if logits.size(-1) != V:
            # Padding columns get -inf (in place: no copy of the big logits tensor), so
            # the loss over the padded row equals the loss over the real vocabulary.
            logits[..., V:].fill_(float("-inf"))
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
        logits = logits[..., :V]
        if use_cache:
            return logits, loss, presents
        return logits, loss

    def optimizer_groups(self, weight_decay: float):
        """AdamW groups: decay on matrices (2-D weights, embeddings), none on biases and norms."""
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def flops_per_token(self) -> float:
        """Training FLOPs per token, PaLM appendix B: 6N + 12 L H Q T."""
        cfg = self.config
        N = self.num_params() - cfg.block_size * cfg.n_embd
        return 6 * N + 12 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * cfg.block_size
