"""``ventralkit study feedback -o OUT``: does CORnet-S100's V4 -> V1 feedback help? One command.

    ventralkit study feedback --dataset digits-occluded:0.5 --outer_times 1 2 3 \\
        --designs gated additive replace --seeds 0 1 2 --epochs 6 -o studies/feedback

Trains every design x outer_times x seed with the engine (each run in OUT/runs/<name>, skipped when
finished and resumed when interrupted, so the same command continues a study), then writes
feedback_study.csv/.md/.png and, per trained feedback model, feedback_inside.csv/.png.
The settings are stored in OUT/study.json: a flag left out is taken from there, so
`ventralkit study feedback -o OUT` continues a study and `... -o OUT --report_only` reports it.

Runs as jobs (pip install 'ventralkit[cluster]'): `--executor local --jobs 2` trains two runs at a time on this
machine (the cores split between them), `--executor slurm --partition gpu --gpus_per_job 1 --time 240` submits
one SLURM job per run (requeued from its last.pt when preempted or timed out). Rerunning the command shows where
every run stands (done / running / failed, with its log) and trains only what is missing; the table is written
when every run has ended. --keep best (default) deletes a finished run's last.pt once its record and best.pt
are safe; the disk the runs need is checked before any starts.
"""

from __future__ import annotations

import argparse

from .common import add_shared


def register(sub) -> None:
    p = sub.add_parser("study", help="multi-run studies: 'study feedback' compares CORnet-S100 feedback designs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_subparsers(dest="study", metavar="STUDY", parser_class=type(p))
    f = which.add_parser("feedback", help="train outer_times x feedback designs x seeds; table and figures",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("-o", "--output", required=True, help="study folder (runs/, tables, figures); re-use it to resume")
    # None = the study's own value (OUT/study.json), else the default named in the help
    f.add_argument("--dataset", default=None,
                   help="digits or digits-occluded[:LEVEL] (LEVEL in [0, 1], default 0.5); default digits-occluded")
    f.add_argument("--outer_times", type=int, nargs="+", default=None,
                   help="passes over V1-V4 (1 = the feed-forward network, trained once per seed); default 1 2 3")
    f.add_argument("--designs", nargs="+", default=None,
                   help="feedback designs, trained in this order; default gated additive replace")
    f.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1")
    f.add_argument("--epochs", type=int, default=None, help="the same for every run; default 6")
    add_shared(f, "image_size", "batch_size")
    f.add_argument("--lr", type=float, default=None, help="default 0.01")
    f.add_argument("--max_steps_per_epoch", type=int, default=None, help="cap on steps per epoch (quick tries)")
    add_shared(f, "workers")  # of each run; not given: 0 (see run)
    f.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per run (default: torch's here; cores // --jobs for local jobs)")
    f.add_argument("--keep", choices=("best", "last", "none"), default="best",
                   help="what a finished run keeps of its checkpoints: best.pt (default), last.pt and best.pt, or "
                        "none (its records, curves and the tables stay)")
    jobs = f.add_argument_group("runs as jobs (submitit; pip install 'ventralkit[cluster]')")
    jobs.add_argument("--executor", choices=("local", "slurm"), default=None,
                      help="train each run as a job: on this machine, or on a SLURM cluster (default: here, one "
                           "after another)")
    jobs.add_argument("--jobs", type=int, default=None,
                      help="local: runs at a time (default 1); slurm: most jobs running at once (default: no cap)")
    jobs.add_argument("--partition", default=None, help="slurm: the partition")
    jobs.add_argument("--gpus_per_job", type=int, default=0, help="GPUs per job (default 0)")
    jobs.add_argument("--cpus_per_job", type=int, default=None, help="slurm: CPUs per job (--cpus-per-task)")
    jobs.add_argument("--time", type=int, default=None,
                      help="time limit per job in minutes (slurm default 60; a job that reaches it saves last.pt "
                           "and is requeued)")
    jobs.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                      help="an extra sbatch option, e.g. --sbatch qos=high --sbatch account=lab (repeatable)")
    f.add_argument("--no_inside", action="store_true", help="skip the per-pass CKA / read-out analysis")
    f.add_argument("--report_only", action="store_true",
                   help="train nothing; tables and figures of the finished runs of the study in -o")
    f.add_argument("--at_epoch", type=int, default=None,
                   help="also tabulate val top-1 after this epoch, from every run that reached it, as "
                        "feedback_study_epoch{N}.csv/.md/.png (default: the last epoch only)")
    f.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run(args) -> int:
    from ..errors import ConfigError
    from ..studies.executor import ExecutorOptions
    from ..studies.feedback import run_feedback_study, study_summary

    if args.threads is not None:
        if args.threads <= 0:
            raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    result = run_feedback_study(args.output, dataset=args.dataset, outer_times=args.outer_times,
                                designs=args.designs, seeds=args.seeds, epochs=args.epochs,
                                image_size=args.image_size, batch_size=args.batch_size, lr=args.lr,
                                workers=0 if args.workers is None else args.workers, inside=not args.no_inside,
                                train_missing=not args.report_only,
                                max_steps_per_epoch=args.max_steps_per_epoch, at_epoch=args.at_epoch,
                                keep=args.keep, executor=executor_options(args, ExecutorOptions))
    print(study_summary(result))
    return 1 if result.complete and result.failed else 0


def executor_options(args, options_class):
    """The --executor flags as ``studies.executor.ExecutorOptions``."""
    return options_class(kind=args.executor, jobs=args.jobs, threads=args.threads, partition=args.partition,
                         gpus_per_job=args.gpus_per_job, cpus_per_job=args.cpus_per_job, time_min=args.time,
                         sbatch=tuple(args.sbatch))
