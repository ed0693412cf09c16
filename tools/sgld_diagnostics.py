"""What EMPL's SGLD does to the prompts of a trained run, at one or more settings.

    python -m tools.sgld_diagnostics --model-dir output/.../EMPL_CoOp/bundled/seed1 \\
        --dataset world_aerial --points "" "TRAINER.EMPL.PRIOR_STD 1.0" "TRAINER.EMPL.SGLD_LAYERS 4"

The run's prompt learner (CoOp or EMPL_CoOp: the same weights) is loaded into EMPL_CoOp built
with the run's config file plus each point's opts; on a few fixed training batches (base classes)
the chains are drawn as in training and measured (the same numbers a training log and tensorboard
show as sgld_*):
  data_energy_z   (data energy of the SGLD chains - that of prior-only chains on the same noise)
                  / the prior-only chains' std of it: < 0 means the data term pulled the chains
                  to lower free energy, -1 is a pull as large as the prior's own scatter;
  shift_ratio     mean cosine distance sample-anchor (same class) / between two classes' anchors;
  spread_ratio    mean cosine distance sample-sample (same class) / between two classes' anchors;
  distance, diversity: rms of H - anchor and of H_i - H_j, in units of rms(anchor);
  ms/call         wall time of one sampling call (this machine).
docs/EMPL.md ("An energy that shapes the samples") has the measurements that chose the defaults.
"""
import argparse
import os
import statistics
import sys
import time

import torch

from tools import protocols, sweep
from tools.reporting.tables import md_table
from trainers.empl import feature_spread

COLUMNS = ("data_energy_z", "shift_ratio", "spread_ratio", "distance_to_anchor", "diversity")


def build_trainer(args, opts):
    import launch

    argv = protocols.train_argv(sys.executable, args.root, args.seed, args.trainer, args.dataset,
                                protocols.config_path(args.trainer, args.cfg), args.output_dir,
                                ["DATASET.NUM_SHOTS", str(args.shots), "DATASET.SUBSAMPLE_CLASSES", "base", *opts])
    cfg = launch.config_from_argv(argv[2:])
    from dassl.engine import build_trainer as dassl_build_trainer

    trainer = dassl_build_trainer(cfg)
    if args.model_dir:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
    return trainer


@torch.no_grad()
def measure(trainer, batches, repeats: int):
    """Mean of each diagnostic over batches x repeats, and ms per sampling call."""
    values = {k: [] for k in COLUMNS}
    seconds = []
    generator = torch.Generator().manual_seed(0)
    for image in batches:
        image_features = trainer.model.encode_image(image)
        hidden, eot = trainer.prefix_states([trainer.model.prompt_learner.classes])
        for _ in range(repeats):
            start = time.perf_counter()
            feats, per_image, result = trainer.sampled_features(
                hidden, eot, image_features, condition="batch", generator=generator, diagnose=True)
            seconds.append(time.perf_counter() - start)
            stats = {k.replace("sgld_", ""): v for k, v in result.as_dict(prefix="sgld_").items()}
            stats.update({k.replace("sgld_", ""): v for k, v in feature_spread(feats).items()})
            for k in COLUMNS:
                if k in stats:
                    values[k].append(stats[k])
    out = {k: statistics.fmean(v) for k, v in values.items() if v}
    out["ms/call"] = 1000 * statistics.median(seconds)
    return out


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="python -m tools.sgld_diagnostics", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="", help="a training run's output folder (empty: the initial context)")
    parser.add_argument("--load-epoch", type=int, default=None)
    parser.add_argument("--dataset", default="world_aerial")
    parser.add_argument("--root", default="data")
    parser.add_argument("--trainer", default="EMPL_CoOp")
    parser.add_argument("--cfg", default="bundled")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batches", type=int, default=4, help="training batches measured")
    parser.add_argument("--repeats", type=int, default=2, help="chain draws per batch")
    parser.add_argument("--points", nargs="+", default=[""], help="config opts per setting ('' = the config file)")
    parser.add_argument("--output-dir", default=os.path.join("output", "sgld_diagnostics"))
    args = parser.parse_args(argv)
    rows = []
    for point in args.points:
        try:
            trainer = build_trainer(args, sweep.parse_point(point))
        except protocols.ProtocolError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        loader = iter(trainer.train_loader_x)
        batches = [next(loader)["img"].to(trainer.device) for _ in range(min(args.batches, len(trainer.train_loader_x)))]
        stats = measure(trainer, batches, args.repeats)
        rows.append([point or "(config file)"] + [f"{stats[k]:.4g}" if k in stats else "–"
                                                   for k in (*COLUMNS, "ms/call")])
    print(md_table(["Setting", *COLUMNS, "ms/call"], rows), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
