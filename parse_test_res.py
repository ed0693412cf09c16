"""Read test results from log.txt files and summarise them over seeds (CoOp's parse_test_res.py).

    python parse_test_res.py output/my_experiment            # my_experiment/seed*/log.txt
    python parse_test_res.py output/my_experiment --ci95     # 95% confidence interval, not std
    python parse_test_res.py output/base2new/test_new/eurosat/shots_16/CoCoOp/cfg --test-log
    python parse_test_res.py output/my_experiment --multi-exp  # my_experiment/exp-*/seed*/log.txt

A training log counts from the line "Finish training"; an --eval-only log (--test-log) from the
line "=> result". The metric is read from the Dassl evaluator's "* accuracy: 71.23%" lines; the
last one after the signal wins.
"""
import argparse
import math
import os
import re
import statistics
import sys
from typing import Dict, List, Optional

TRAIN_END_SIGNAL = "Finish training"
TEST_END_SIGNAL = "=> result"


def metric_regex(keyword: str) -> "re.Pattern":
    return re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")


def last_metric(lines, keyword: str = "accuracy", end_signal: Optional[str] = TRAIN_END_SIGNAL) -> Optional[str]:
    """The number of the last `* keyword: X%` line after the line `end_signal` (None: anywhere)
    among lines (a log file, or a run's captured output split into lines), as written; None if
    there is none. The one reader of Dassl's result lines: read_metric, tools/reporting/results.py,
    tools/execution.py and tools/modality_gap.py use it."""
    regex = metric_regex(keyword)
    started, value = end_signal is None, None
    for line in lines:
        line = line.strip()
        if line == end_signal:
            started = True
        match = regex.search(line) if started else None
        if match:
            value = match.group(1)
    return value


def read_metric(log_path: str, keyword: str = "accuracy",
                end_signal: Optional[str] = TRAIN_END_SIGNAL) -> Optional[float]:
    """The last `* keyword: X%` value after `end_signal` (None: anywhere) in one log, or None if
    there is none."""
    with open(log_path, encoding="utf-8", errors="replace") as f:
        value = last_metric(f, keyword, end_signal)
    return None if value is None else float(value)


def mean_and_spread(values: List[float], ci95: bool = False):
    """Mean and population std (numpy's default, as CoOp reports) or the 95% CI half-width."""
    mean = statistics.fmean(values)
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return mean, (1.96 * std / math.sqrt(len(values)) if ci95 else std)


def parse_directory(directory: str, keyword: str, end_signal: str, ci95: bool, out=None) -> Dict[str, float]:
    """Print one line per seed folder and the summary; return {keyword: mean}."""
    out = out or sys.stdout
    print(f"Parsing files in {directory}", file=out)
    values = []
    for sub in sorted(d for d in os.listdir(directory) if not d.startswith(".")):
        log_path = os.path.join(directory, sub, "log.txt")
        if not os.path.isfile(log_path):
            continue
        value = read_metric(log_path, keyword, end_signal)
        if value is not None:
            print(f"file: {log_path}. {keyword}: {value:.2f}%. ", file=out)
            values.append(value)
    if not values:
        raise SystemExit(
            f"error: no '* {keyword}: X%' line after '{end_signal}' in {directory}/*/log.txt "
            "(use --test-log for --eval-only runs)"
        )
    mean, spread = mean_and_spread(values, ci95)
    print("===", file=out)
    print(f"Summary of directory: {directory}", file=out)
    print(f"* {keyword}: {mean:.2f}% +- {spread:.2f}%", file=out)
    print("===", file=out)
    return {keyword: mean}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", help="folder whose subfolders (seeds) hold log.txt")
    parser.add_argument("--ci95", action="store_true", help="95%% confidence interval instead of std")
    parser.add_argument("--test-log", action="store_true", help="parse --eval-only logs")
    parser.add_argument("--multi-exp", action="store_true", help="directory holds several experiments")
    parser.add_argument("--keyword", default="accuracy", help="metric to extract (accuracy, error, macro_f1)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        raise SystemExit(f"error: {args.directory} is not a directory")
    end_signal = TEST_END_SIGNAL if args.test_log else TRAIN_END_SIGNAL

    if not args.multi_exp:
        return parse_directory(args.directory, args.keyword, end_signal, args.ci95)
    means = []
    for sub in sorted(d for d in os.listdir(args.directory) if not d.startswith(".")):
        path = os.path.join(args.directory, sub)
        if os.path.isdir(path):
            means.append(parse_directory(path, args.keyword, end_signal, args.ci95)[args.keyword])
    print("Average performance")
    print(f"* {args.keyword}: {statistics.fmean(means):.2f}%")
    return {args.keyword: statistics.fmean(means)}


if __name__ == "__main__":
    main()
