"""Check that our prompt learners give the reference implementations' logits.

    python -m tools.check_reference_parity --coop-repo /path/to/KaiyangZhou/CoOp
    python -m tools.check_reference_parity --maple-repo /path/to/muzairkhattak/multimodal-prompt-learning
    python -m tools.check_reference_parity --kgcoop-repo /path/to/htyao89/KgCoOp   # also loss and ctx gradient

The reference trainer files are imported from that checkout (never copied into this project);
they import `dassl` (ours) and `clip`: the clip-anytorch package for CoOp's files, the MaPLe
repository's own forked clip package for its maple.py (loaded under another module name, and
seen as `clip` only while the reference trainer is imported). Both sides are built from the
same random-init CLIP in fp32, the reference's learnable parameters are overwritten with ours,
and the logits of the same image batch are compared. Exit status 1 if any case differs by more
than --tol (default 1e-4).
"""
import argparse
import sys

from tools.parity.coop_cases import cocoop_cases, coop_cases, kgcoop_cases, zeroshot_cases
from tools.parity.harness import (
    import_reference_trainers, import_reference_with_forked_clip, perturbed_clip, print_table, reference_module,
)
from tools.parity.maple_cases import maple_cases, promptsrc_cases, promptsrc_gpa_cases, promptsrc_template_case
from trainers.clip_backbone import LOCAL_CLIP_CONFIGS


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.check_reference_parity", description=__doc__.split("\n")[0])
    parser.add_argument("--coop-repo", help="root of a KaiyangZhou/CoOp checkout (CoOp, CoCoOp, ZeroshotCLIP)")
    parser.add_argument("--maple-repo", help="root of a muzairkhattak/multimodal-prompt-learning checkout (MaPLe)")
    parser.add_argument("--kgcoop-repo", help="root of a htyao89/KgCoOp checkout (KgCoOp; uses --backbone)")
    parser.add_argument("--backbone", default="tiny-vit", help="random-init CLIP configuration for CoOp's trainers")
    parser.add_argument(
        "--maple-backbone", default="random-vit-b16",
        help="random-init CLIP configuration for MaPLe (the reference hard-codes text width 512 and vision width 768)",
    )
    parser.add_argument("--promptsrc-repo", help="root of a muzairkhattak/PromptSRC checkout (PromptSRC)")
    parser.add_argument("--promptsrc-backbone", default="random-vit-b16",
                        help="random-init CLIP configuration for PromptSRC (its depths need >= 12 blocks per encoder)")
    parser.add_argument("--tol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if not args.coop_repo and not args.maple_repo and not args.kgcoop_repo and not args.promptsrc_repo:
        parser.error("pass --coop-repo, --maple-repo, --kgcoop-repo and/or --promptsrc-repo")

    failed = 0
    if args.coop_repo:
        clip_model, images = perturbed_clip(args.backbone)
        pkg = import_reference_trainers(args.coop_repo)
        ref_coop = reference_module(pkg, "coop")
        ref_cocoop = reference_module(pkg, "cocoop")
        ref_zsclip = reference_module(pkg, "zsclip")

        rows = list(coop_cases(ref_coop, clip_model, images))
        rows += list(cocoop_cases(ref_cocoop, clip_model, images))
        rows += list(zeroshot_cases(ref_zsclip, clip_model, images))
        failed += print_table(rows, args.tol, f"fp32, backbone {args.backbone}")

    if args.maple_repo:
        config = LOCAL_CLIP_CONFIGS.get(args.maple_backbone)
        if config is None or (config["transformer_width"], config["vision_width"]) != (512, 768):
            raise SystemExit(
                f"error: --maple-backbone {args.maple_backbone}: the reference MaPLe hard-codes text width 512 and "
                "vision width 768 (ViT-B/16 shapes); use random-vit-b16"
            )
        clip_model, images = perturbed_clip(args.maple_backbone)
        ref_maple, forked_clip = import_reference_with_forked_clip(args.maple_repo, "maple", "MaPLe")
        rows = list(maple_cases(ref_maple, forked_clip, clip_model, args.maple_backbone, images))
        failed += print_table(rows, args.tol, f"fp32, backbone {args.maple_backbone}")

    if args.kgcoop_repo:
        clip_model, images = perturbed_clip(args.backbone)
        ref_kgcoop = reference_module(import_reference_trainers(args.kgcoop_repo, "reference_kgcoop_trainers"), "kgcoop")
        rows = list(kgcoop_cases(ref_kgcoop, clip_model, images))
        failed += print_table(rows, args.tol, f"KgCoOp: frozen features, logits, loss, ctx gradient; fp32, backbone "
                                              f"{args.backbone}")

    if args.promptsrc_repo:
        clip_model, images = perturbed_clip(args.promptsrc_backbone)
        ref_promptsrc, forked_clip = import_reference_with_forked_clip(args.promptsrc_repo, "promptsrc", "PromptSRC")
        rows = list(promptsrc_template_case(ref_promptsrc))
        rows += list(promptsrc_cases(ref_promptsrc, forked_clip, clip_model, args.promptsrc_backbone, images))
        rows += list(promptsrc_gpa_cases(ref_promptsrc))
        failed += print_table(rows, args.tol, f"PromptSRC: templates, frozen features, logits, training loss and its "
                                              f"terms, prompt gradients, GPA; fp32, backbone {args.promptsrc_backbone}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
