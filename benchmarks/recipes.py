"""Recipes other than the notebook's, for benchmarks/ablate.py.

A recipe change is a function `change(nb, cfg) -> cfg`: it receives a fresh copy of the notebook's definitions
(notebook_defs.load_definitions()) and the run's Config, may replace some of those definitions, and returns the
Config to train with. The notebook's own train(), evaluate() and generate() then run the changed recipe as they run
the notebook's, so every variant is trained, scored and sampled by the same code.
"""

import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def step_of(idx, T):
    """The step t whose mask rate t/T matches the share of each row hidden, ceil(T · share), at least 1: what a model
    that takes t is told, now that the notebook's denoiser takes none."""
    hidden = (idx == MASK_ID).sum(1)
    return ((T * hidden + idx.shape[1] - 1) // idx.shape[1]).clamp(min=1)


MASK_ID = 4  # [MASK]'s id: the fifth of the notebook's special tokens, which every tokenizer of it numbers first


def reference_network(embedding_std):
    """The reference notebook's network: a learned table of absolute positions and an embedding of the step added to
    the token embeddings, plain pre-LayerNorm blocks, dropout 0.1; its tied embedding drawn from N(0, embedding_std)
    (the reference's is 1.0)."""

    def change(nb, cfg):
        nb.DiffusionLM = reference_model_class(nb, embedding_std, dropout=0.1)
        return cfg

    return change


def reference_model_class(nb, embedding_std, dropout):
    class ReferenceBlock(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
            self.attn, self.mlp = nb.SelfAttention(config), nb.MLP(config)
            self.drop = nn.Dropout(dropout)

        def forward(self, x, rotary):
            x = x + self.drop(self.attn(self.ln1(x), rotary))
            return x + self.drop(self.mlp(self.ln2(x)))

    class ReferenceLM(nb.DiffusionLM):
        def __init__(self, config):
            nn.Module.__init__(self)
            self.config = config
            self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
            self.pos_emb = nn.Embedding(config.seq_len, config.d_model)
            self.step_emb = nn.Embedding(config.diffusion_steps + 1, config.d_model)
            self.drop = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(ReferenceBlock(config) for _ in range(config.n_layers))
            self.ln_f = nn.LayerNorm(config.d_model)
            self.head = nb.OutputLayer(config.d_model, config.vocab_size, bias=False)
            self.head.weight = self.tok_emb.weight
            head_dim = config.d_model // config.n_heads
            # no rotation: cos 1, sin 0 turn the notebook's rotary attention into plain attention
            self.register_buffer("rope_cos", torch.ones(config.seq_len, head_dim // 2), persistent=False)
            self.register_buffer("rope_sin", torch.zeros(config.seq_len, head_dim // 2), persistent=False)
            self.apply(nb.init_weights)
            for block in self.blocks:
                for proj in (block.attn.proj, block.mlp.down):
                    nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * config.n_layers))
            nn.init.normal_(self.tok_emb.weight, std=embedding_std)

        def hidden_states(self, idx):
            L, t = idx.shape[1], step_of(idx, self.config.diffusion_steps)
            x = self.tok_emb(idx) + self.pos_emb(torch.arange(L, device=idx.device)) + self.step_emb(t)[:, None]
            x, rotary = self.drop(x), (self.rope_cos[:L], self.rope_sin[:L])
            for block in self.blocks:
                x = block(x, rotary)
            return self.ln_f(x)

    return ReferenceLM


def half_way_schedule(nb, cfg):
    """The reference's learning-rate schedule: a cosine sized in micro-steps but stepped once per optimizer update, so
    that with grad_accum=2 it only decays half-way."""
    notebook_lr_at = nb.lr_at
    nb.lr_at = lambda update, cfg: notebook_lr_at(update, dataclasses.replace(cfg, grad_accum=1))
    return cfg


def dropout(p):
    """Dropout p on the residual branches of the notebook's blocks (the reference's 0.1)."""

    def change(nb, cfg):
        class DropoutBlock(nb.Block):
            def __init__(self, config):
                super().__init__(config)
                for branch in (self.attn, self.mlp):  # dropout on each branch's output, before its gate
                    branch.register_forward_hook(lambda module, inputs, output: F.dropout(output, p, module.training))

        nb.Block = DropoutBlock
        return cfg

    return change


def adaln_zero(nb, cfg):
    """The step as DiT feeds it (adaLN-Zero): an embedding of t sets a scale and a shift for each LayerNorm and a gate
    for each residual branch, all zero at first; t is the step whose mask rate matches the share of the input hidden."""
    step_dim = 32

    class ModulatedBlock(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
            self.attn, self.mlp = nb.SelfAttention(config), nb.MLP(config)
            self.modulation = nn.Linear(step_dim, 6 * config.d_model)  # zeroed by the model, after init_weights

        def forward(self, x, rotary, step):
            shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(step)[:, None].chunk(6, dim=-1)
            x = x + gate1 * self.attn(self.ln1(x) * (1 + scale1) + shift1, rotary)
            return x + gate2 * self.mlp(self.ln2(x) * (1 + scale2) + shift2)

    class StepConditionedLM(nb.DiffusionLM):
        def __init__(self, config):
            super().__init__(config)  # with ModulatedBlock as its Block
            self.step_emb = nn.Embedding(config.diffusion_steps + 1, step_dim)
            nn.init.normal_(self.step_emb.weight, std=0.02)
            for block in self.blocks:
                nn.init.zeros_(block.modulation.weight)

        def hidden_states(self, idx):
            L = idx.shape[1]
            x, rotary = self.tok_emb(idx), (self.rope_cos[:L], self.rope_sin[:L])
            step = F.silu(self.step_emb(step_of(idx, self.config.diffusion_steps)))
            for block in self.blocks:
                x = block(x, rotary, step)
            return self.ln_f(x)

    nb.Block, nb.DiffusionLM = ModulatedBlock, StepConditionedLM
    return cfg


def zero_projections(nb, cfg):
    """No gates: each residual branch's output projection starts at zero instead, so that blocks start as the identity
    all the same."""

    class UngatedBlock(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
            self.attn, self.mlp = nb.SelfAttention(config), nb.MLP(config)

        def forward(self, x, rotary):
            x = x + self.attn(self.ln1(x), rotary)
            return x + self.mlp(self.ln2(x))

    class ZeroProjectionsLM(nb.DiffusionLM):
        def __init__(self, config):
            super().__init__(config)  # with UngatedBlock as its Block
            for block in self.blocks:
                nn.init.zeros_(block.attn.proj.weight)
                nn.init.zeros_(block.mlp.down.weight)

    nb.Block, nb.DiffusionLM = UngatedBlock, ZeroProjectionsLM
    return cfg


def untied_embeddings(nb, cfg):
    """The output layer's weights its own, not the input embedding's: as many more parameters as the embedding has,
    and the same arithmetic per update."""

    class UntiedLM(nb.DiffusionLM):
        def __init__(self, config):
            super().__init__(config)
            self.head.weight = nn.Parameter(torch.empty_like(self.tok_emb.weight))
            nb.init_weights(self.head)  # as the notebook initialises every linear layer

    nb.DiffusionLM = UntiedLM
    return cfg


def diffusion_loss(per_row, antithetic):
    """The notebook's training loss with the hidden tokens' cross-entropy averaged per row, then over rows (each block
    weighs the same whatever its t: the ELBO's weighting), and/or the steps t of a micro-batch spread evenly over
    1..T from one random offset (antithetic, low-discrepancy steps) instead of drawn independently."""

    def change(nb, cfg):
        def diffusion_loss(model, x, mask_id, T):
            if antithetic:
                spread = (torch.rand(1, device=x.device) + torch.arange(len(x), device=x.device) / len(x)) % 1
                t = 1 + (spread * T).long().clamp(max=T - 1)
            else:
                t = torch.randint(1, T + 1, (len(x),), device=x.device)
            noisy, hidden = nb.corrupt(x, t, T, mask_id)
            losses = torch.where(hidden, model(noisy, x), 0.0)
            if per_row:
                return (losses.sum(1) / hidden.sum(1).clamp(min=1)).mean()
            return losses.sum() / hidden.sum().clamp(min=1)

        nb.diffusion_loss = diffusion_loss
        return cfg

    return change


def settings(**values):
    """Config values, e.g. settings(seed=7)."""
    return lambda nb, cfg: dataclasses.replace(cfg, **values)


def model_settings(**values):
    """ModelConfig values, e.g. model_settings(vocab_size=2_048)."""
    return lambda nb, cfg: dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **values))


def blocks_per_update(blocks):
    """Optimizer updates of `blocks` blocks, one micro-batch each, as many more of them as the same tokens make; the
    same validation blocks."""

    def change(nb, cfg):
        total = cfg.batch_size * cfg.micro_steps
        return dataclasses.replace(cfg, batch_size=blocks, grad_accum=1, micro_steps=total // blocks,
                                   eval_batches=cfg.eval_batches * cfg.batch_size // blocks)

    return change


def lr_scale(factor):
    return lambda nb, cfg: dataclasses.replace(cfg, lr=cfg.lr * factor)


def updates_scale(factor):
    """factor times the optimizer updates: a cheaper shape trained for the time the default's updates take."""
    return lambda nb, cfg: dataclasses.replace(cfg, micro_steps=round(cfg.micro_steps * factor))


VARIANTS = {
    "defaults": [],
    "reference": [reference_network(embedding_std=1.0), half_way_schedule, settings(optimizer="adamw")],  # all of it
    "fixed": [reference_network(embedding_std=0.02), settings(optimizer="adamw")],  # its init and schedule fixed
    "dropout 0.1": [dropout(0.1)],
    "adaLN-Zero step": [adaln_zero],  # the model told t through adaLN-Zero (RESULTS, 2.1)
    "zero projections, no gates": [zero_projections],
    "another seed": [settings(seed=7)],
    "lr x3": [lr_scale(3.0)],
    "lr /3": [lr_scale(1 / 3)],
    "lr x1.5": [lr_scale(1.5)],
    "lr x2": [lr_scale(2.0)],
    "a third of the data": [settings(n_train_stories=3_300)],  # the same tokens, seen about 3 times
    "half the batch": [blocks_per_update(8)],  # at the small scale: twice the updates, of half the tokens
    "a quarter of the batch": [blocks_per_update(4)],
    "vocabulary 2,048": [model_settings(vocab_size=2_048)],  # half the cpu mode's 4,096 (RESULTS 2.3)
    "vocabulary 8,000": [model_settings(vocab_size=8_000)],  # quick's
    "untied embeddings": [untied_embeddings],
    # smaller shapes given the time of the default's updates (an update of each timed on the CPU: 0.55x, 0.7x)
    "2 layers, 1.8x the updates": [model_settings(n_layers=2), updates_scale(1.8)],
    "width 96, 1.4x the updates": [model_settings(d_model=96, n_heads=3, d_ff=384), settings(lr=4e-3),  # lr rule
                                   updates_scale(1.4)],
    "per-row loss": [diffusion_loss(per_row=True, antithetic=False)],
    "antithetic t": [diffusion_loss(per_row=False, antithetic=True)],
    "per-row loss, antithetic t": [diffusion_loss(per_row=True, antithetic=True)],
    "AdamW": [settings(optimizer="adamw")],  # AdamW for the blocks' matrices too, instead of Muon (RESULTS 2.6)
}


def apply(nb, cfg, names):
    """cfg, and nb changed in place, for the variants `names` applied in order."""
    for name in names:
        for change in VARIANTS[name]:
            cfg = change(nb, cfg)
    return cfg
