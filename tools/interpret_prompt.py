"""Nearest vocabulary words of learned context vectors (CoOp's interpret_prompt.py, extended to
prompt sets and EMPL samples).

    # a checkpoint file (CoOp's usage); the token table comes from --backbone
    python -m tools.interpret_prompt RUN/prompt_learner/model.pth.tar-5 --backbone tiny-vit --topk 3
    # a run folder: backbone from its config; EMPL also draws --samples from the loaded anchor
    python -m tools.interpret_prompt RUN --topk 3 [--metric cosine] [--samples] [--opts KEY VALUE ...]

Each context vector ctx_m is compared with every row of CLIP's token embedding table
(Euclidean distance as CoOp's script, or cosine similarity) and its top-k tokens are printed.
A [M, d] ctx is one prompt; a [K, M, d] ctx is K prompt sets (ProDA) or class-specific contexts.
EMPL samples are interpretable only where they are token embeddings, i.e. with
TRAINER.EMPL.SGLD_LAYERS equal to the text depth (pass it with --opts to draw such samples from
the same anchor); at a deeper block the tool says so and prints the anchor only.
"""
import argparse
import os.path as osp
from typing import List, Tuple

import torch

from dassl.utils import UserValueError
from trainers.clip_backbone import _tokenizer

METRICS = ("euclidean", "cosine")


def nearest_tokens(ctx: torch.Tensor, token_embedding: torch.Tensor, topk: int = 5, metric: str = "euclidean"
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """ctx [M, d], token_embedding [V, d] -> (token ids [M, topk], scores [M, topk]).

    euclidean: ascending distance (CoOp's torch.cdist); cosine: descending cosine similarity.
    """
    if metric not in METRICS:
        raise UserValueError(f"metric must be one of {METRICS}, got {metric!r}")
    ctx, table = ctx.float(), token_embedding.float()
    if ctx.shape[-1] != table.shape[-1]:
        raise UserValueError(
            f"context width {ctx.shape[-1]} does not match the token embedding width {table.shape[-1]}: "
            "wrong --backbone for this checkpoint?"
        )
    if metric == "euclidean":
        scores = torch.cdist(ctx, table)
        values, ids = scores.topk(topk, dim=-1, largest=False)
    else:
        scores = torch.nn.functional.normalize(ctx, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).t()
        values, ids = scores.topk(topk, dim=-1, largest=True)
    return ids, values


def token_strings(ids: torch.Tensor) -> List[List[str]]:
    """Token ids [M, k] -> their BPE strings (CLIP's tokenizer decoder, '</w>' marks a word end)."""
    return [[_tokenizer.decoder[int(i)] for i in row] for row in ids]


def format_prompt(name: str, ctx: torch.Tensor, token_embedding: torch.Tensor, topk: int, metric: str) -> str:
    """One block of lines: 'name' then 'm: [words] [scores]' per context vector (CoOp's format)."""
    ids, values = nearest_tokens(ctx, token_embedding, topk, metric)
    lines = [f"{name}:"]
    for m, (words, vals) in enumerate(zip(token_strings(ids), values)):
        lines.append(f"  {m + 1}: {words} {[f'{v:.4f}' for v in vals.tolist()]}")
    return "\n".join(lines)


def context_from_checkpoint(path: str) -> torch.Tensor:
    """The learned 'ctx' of a prompt_learner checkpoint: [M, d] or [K, M, d]."""
    from dassl.utils import load_checkpoint

    state = load_checkpoint(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or "ctx" not in state:
        raise UserValueError(f"{path} holds no learned context 'ctx' (not a prompt_learner checkpoint?)")
    return state["ctx"]


def token_table(backbone: str, clip_checkpoint: str = "") -> torch.Tensor:
    """CLIP's token embedding table [V, d] for a backbone name (load_clip's rules)."""
    from yacs.config import CfgNode as CN

    from trainers.clip_backbone import load_clip

    cfg = CN({"MODEL": CN({"BACKBONE": CN({"NAME": backbone, "CHECKPOINT": clip_checkpoint})})})
    return load_clip(cfg).token_embedding.weight.detach()


def prompts_of_run(run_dir: str, root, opts, epoch, with_samples: bool):
    """[(name, ctx [M, d])] of a run: its context (every set), and EMPL samples on request;
    plus notes to print. Returns (prompts, token table [V, d], notes)."""
    from tools.analysis import trainer_prompts
    from tools.run_loading import build_trainer_from_run
    from trainers.empl import EMPLMixin

    trainer = build_trainer_from_run(run_dir, root, opts, epoch)
    table = trainer.model.token_embedding.weight.detach()
    ctx = trainer.model.prompt_learner.ctx.detach()
    prompts = label_contexts(ctx)
    notes = []
    if with_samples:
        if not isinstance(trainer, EMPLMixin):
            notes.append(f"--samples: {type(trainer).__name__} draws no samples; its prompts are shown")
        elif trainer.split_text.split != 0:
            depth = trainer.split_text.encoder.num_layers
            notes.append(
                f"--samples: this run samples hidden states at text block {trainer.split_text.split}, not token "
                f"embeddings; add --opts TRAINER.EMPL.SGLD_LAYERS {depth} to draw token-level samples "
                "from the same anchor"
            )
        else:
            drawn = trainer_prompts(trainer)["context"]  # [K * (1 + N), M, d], anchor first per group
            # Block 0's input is token + positional embedding: remove the context positions' part.
            positional = trainer.split_text.encoder.positional_embedding[1 : 1 + drawn.shape[1]]
            drawn = drawn - positional.to(drawn.dtype)
            per_group = 1 + trainer.empl_cfg.N_CHAINS
            for i, sample in enumerate(drawn):
                group, index = divmod(i, per_group)
                if index:
                    prompts.append((f"anchor {group + 1} sample {index}", sample))
    return prompts, table, notes


def label_contexts(ctx: torch.Tensor):
    """ctx [M, d] -> [('context', ctx)]; [K, M, d] -> [('set k', ctx[k])]."""
    if ctx.dim() == 2:
        return [("context", ctx)]
    return [(f"set {k + 1}", c) for k, c in enumerate(ctx)]


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m tools.interpret_prompt", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="a prompt_learner checkpoint file, or a train.py output folder")
    parser.add_argument("--topk", type=int, default=5, help="words per context vector")
    parser.add_argument("--metric", default="euclidean", choices=METRICS)
    parser.add_argument("--backbone", default="", help="CLIP name for a checkpoint file (e.g. ViT-B/16, tiny-vit)")
    parser.add_argument("--clip-checkpoint", default="", help="CLIP weights file (MODEL.BACKBONE.CHECKPOINT)")
    parser.add_argument("--samples", action="store_true", help="EMPL: also draw and interpret SGLD samples")
    parser.add_argument("--root", default="", help="dataset root for a run folder (EMPL samples use its images)")
    parser.add_argument("--load-epoch", type=int, help="checkpoint epoch of a run folder (default: the last saved)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides for a run folder")
    return parser


def main(argv=None) -> str:
    args = build_parser().parse_args(argv)
    if args.topk < 1:
        raise UserValueError(f"--topk must be >= 1, got {args.topk}")
    notes = []
    if osp.isfile(args.source):
        if not args.backbone:
            raise UserValueError("a checkpoint file needs --backbone (the CLIP it was trained on), e.g. --backbone ViT-B/16")
        prompts = label_contexts(context_from_checkpoint(args.source))
        table = token_table(args.backbone, args.clip_checkpoint)
    elif osp.isdir(args.source):
        prompts, table, notes = prompts_of_run(args.source, args.root or None, args.opts, args.load_epoch, args.samples)
    else:
        raise FileNotFoundError(f"{args.source}: no such checkpoint file or run folder")
    score = "distance" if args.metric == "euclidean" else "cosine similarity"
    lines = [f"Return the top-{args.topk} matched words ({args.metric} {score}); token table {tuple(table.shape)}"]
    lines += notes
    lines += [format_prompt(name, ctx, table, args.topk, args.metric) for name, ctx in prompts]
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    from launch import run_reporting_user_errors

    run_reporting_user_errors(main)
