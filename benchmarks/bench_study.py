"""Benchmarks of aeclust against the notebook's method; results go to docs/benchmarks.md.

Subcommands, each printing Markdown and writing JSON to ``--output``:

``study``
    Alternates (A B A B ...) the notebook's method (``notebook_method.py``,
    no tracking) with ``aeclust sweep --tsne-runs best`` + ``aeclust compare`` on the same
    data and seed, each in its own process. It reports the median wall
    time, the ratio B/A, the peak RSS of each process, and both methods'
    ARI and silhouette per configuration.
``profile``
    Runs ``aeclust sweep`` + ``compare`` once under cProfile and splits the
    wall time into training, clustering, silhouette, t-SNE, figures, MLflow
    calls and data loading.
``jobs``
    Times ``aeclust sweep --no-tsne`` with ``--jobs 1`` and with ``--jobs N``
    on the same data and seed, and checks that both give the same scores.
``silhouette``
    Times aeclust's exact blocked silhouette against scikit-learn's
    ``silhouette_score`` on the same features, in the same process.
``tsne``
    Times openTSNE through aeclust on N points of PCA features of images.
``kmeans``
    Times K-means with Lloyd's and with Elkan's algorithm on PCA features
    of EMNIST-sized images, and reports how many labels agree.
``fullsize``
    Runs a default ``aeclust sweep`` on a whole split (``--sample-size 0``)
    and ``compare``, and reports the wall time and peak RSS of each. With
    ``--n-points`` it first makes that many EMNIST-sized images from the
    EMNIST .npz file.

Example::

    python benchmarks/bench_study.py study --dataset $DATA/cifar10/train --repeats 2 \\
        --output benchmarks/results/study-cifar10.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def peak_rss_mib(command: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """Run ``command`` to completion; return its wall seconds, its peak RSS in MiB and its output.

    The peak RSS is the largest sum over the process and its children (worker
    processes of a sweep), sampled every 0.2 s, or the kernel's peak of the
    largest single process if that is higher.
    """
    import threading

    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    tree_peak = [0]
    done = threading.Event()

    def sample_tree():
        root = psutil.Process(process.pid)
        while not done.wait(0.2):
            total = 0
            try:
                for member in [root, *root.children(recursive=True)]:
                    total += member.memory_info().rss
            except psutil.Error:
                continue  # a worker ended between listing and reading
            tree_peak[0] = max(tree_peak[0], total)

    sampler = threading.Thread(target=sample_tree, daemon=True)
    sampler.start()
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return seconds, max(usage.ru_maxrss / 1024, tree_peak[0] / 2**20), output


def aeclust_commands(dataset: str, sample_size: int, seed: int, store: Path) -> list[list[str]]:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    common = ["--tracking-uri", uri, "--quiet"]
    return [
        [sys.executable, "-m", "aeclust.cli", "sweep", "--dataset", dataset,
         "--sample-size", str(sample_size), "--seed", str(seed), "--tsne-runs", "best", *common],
        [sys.executable, "-m", "aeclust.cli", "compare", "--dataset", dataset,
         "--output-dir", str(store / "out"), *common],
    ]


def aeclust_scores(store: Path) -> list[dict]:
    summary = json.loads((store / "out" / "summary.json").read_text(encoding="utf-8"))
    return [
        {"method": row["method"], "latent_dim": row["latent_dim"], "ari": row["ari"],
         "silhouette": row["silhouette"]}
        for row in summary["table"]
    ]


def study(args) -> dict:
    env = {**os.environ, "AECLUST_CACHE_DIR": str(Path(args.workdir) / "array-cache")}
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    # Warm the array cache once, as a user's second sweep on the same data finds it.
    subprocess.run([sys.executable, "-c", "from aeclust import data; from aeclust.config import DataConfig; "
                    f"data.load_dataset(DataConfig(dataset={args.dataset!r}))"], env=env, check=True)

    rounds = []
    for repeat in range(args.repeats):
        scores_file = workdir / f"notebook-{repeat}.json"
        seconds, rss, _ = peak_rss_mib(
            [sys.executable, str(HERE / "notebook_method.py"), "--dataset", args.dataset,
             "--sample-size", str(args.sample_size), "--seed", str(args.seed),
             "--output", str(scores_file)], env, workdir)
        notebook = {"seconds": seconds, "peak_rss_mib": rss,
                    "scores": json.loads(scores_file.read_text())["scores"]}
        print(f"round {repeat + 1}: notebook {seconds:.1f} s, peak RSS {rss:.0f} MiB", flush=True)

        store = Path(tempfile.mkdtemp(dir=workdir, prefix="store-"))
        total, peak = 0.0, 0.0
        for command in aeclust_commands(args.dataset, args.sample_size, args.seed, store):
            seconds, rss, _ = peak_rss_mib(command, env, store)
            total += seconds
            peak = max(peak, rss)
        tool = {"seconds": total, "peak_rss_mib": peak, "scores": aeclust_scores(store)}
        print(f"round {repeat + 1}: aeclust {total:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
        rounds.append({"notebook": notebook, "aeclust": tool})

    a = statistics.median(r["notebook"]["seconds"] for r in rounds)
    b = statistics.median(r["aeclust"]["seconds"] for r in rounds)
    result = {"dataset": args.dataset, "sample_size": args.sample_size, "seed": args.seed,
              "rounds": rounds, "notebook_median_s": a, "aeclust_median_s": b, "ratio": b / a}
    print(f"\nmedian wall time: notebook {a:.1f} s, aeclust {b:.1f} s, ratio {b / a:.2f}\n")
    print("| method | latent_dim | ARI notebook | ARI aeclust | silhouette notebook | silhouette aeclust |")
    print("|---|---|---|---|---|---|")
    last = rounds[-1]
    tool_rows = {(row["method"], row["latent_dim"]): row for row in last["aeclust"]["scores"]}
    for row in last["notebook"]["scores"]:
        other = tool_rows.get((row["method"], row["latent_dim"]), {})
        print(f"| {row['method']} | {row['latent_dim']} | {row['ari']:.4f} | {other.get('ari', float('nan')):.4f} "
              f"| {row['silhouette']:.4f} | {other.get('silhouette', float('nan')):.4f} |")
    return result


PROFILE_GROUPS = {
    "autoencoder training": ("models.py", "fit_autoencoder"),
    "PCA": ("models.py", "fit_pca"),
    "clustering": ("cluster.py", "fit_clusters"),
    "silhouette": ("metrics.py", "silhouette"),
    "t-SNE": ("embed.py", "tsne_2d"),
    "figures per run (drawing and logging)": ("pipeline.py", "_log_figures"),
    "MLflow: encoder model": ("tracking.py", "log_encoder"),
    "MLflow: clusterer model": ("tracking.py", "log_clusterer"),
    "MLflow: PCA model": ("tracking.py", "log_pca"),
    "PNG rendering of figures": ("plots.py", "render_png"),
    "MLflow: figures": ("tracking.py", "log_png"),
    "MLflow: params, metrics, CSV": ("tracking.py", "log_params log_metrics log_history log_csv"),
    "MLflow: run start and end": ("tracking.py", "active_run"),
    "data loading": ("pipeline.py", "load_data"),
    "compare (whole command)": ("compare.py", "run_compare"),
}


def tracking_layer_seconds(stats: dict) -> float:
    """Sum the time of every call into aeclust's tracking layer from outside it.

    All MLflow calls live in ``aeclust/tracking.py``, so this is MLflow's
    share: logging, model saving, registry and store queries. Calls made
    inside the module are part of their caller's time and are not counted
    again.
    """
    module = os.path.join("aeclust", "tracking.py")
    total = 0.0
    for (filename, _, _), (_, _, _, _, callers) in stats.items():
        if not filename.endswith(module):
            continue
        for (caller_file, _, _), (_, _, _, cumulative) in callers.items():
            if not caller_file.endswith(module):
                total += cumulative
    return total


def profile(args) -> dict:
    import pstats

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AECLUST_CACHE_DIR": str(workdir / "array-cache")}
    store = Path(tempfile.mkdtemp(dir=workdir, prefix="profile-"))
    totals: dict[str, float] = {}
    wall = tracked = 0.0
    for index, command in enumerate(aeclust_commands(args.dataset, args.sample_size, args.seed, store)):
        stats_file = store / f"profile-{index}.pstats"
        command = [sys.executable, "-m", "cProfile", "-o", str(stats_file), *command[1:]]
        seconds, _, _ = peak_rss_mib(command, env, store)
        wall += seconds
        stats = pstats.Stats(str(stats_file)).stats
        tracked += tracking_layer_seconds(stats)
        for group, (module, names) in PROFILE_GROUPS.items():
            for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
                if filename.endswith(module) and function in names.split() and "aeclust" in filename:
                    totals[group] = totals.get(group, 0.0) + cumulative
    print(f"wall time of sweep + compare under cProfile: {wall:.1f} s\n")
    print("| part | seconds | share of wall time |")
    print("|---|---|---|")
    for group, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {group} | {seconds:.1f} | {seconds / wall:.1%} |")
    print(f"| MLflow: every call into aeclust/tracking.py | {tracked:.1f} | {tracked / wall:.1%} |")
    return {"dataset": args.dataset, "wall_s": wall, "parts_s": totals, "mlflow_s": tracked,
            "mlflow_share": tracked / wall}


def jobs(args) -> dict:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AECLUST_CACHE_DIR": str(workdir / "array-cache")}
    result = {"dataset": args.dataset}
    scores = {}
    for n_jobs in (1, args.jobs):
        store = Path(tempfile.mkdtemp(dir=workdir, prefix=f"jobs{n_jobs}-"))
        command = [sys.executable, "-m", "aeclust.cli", "sweep", "--dataset", args.dataset,
                   "--sample-size", str(args.sample_size), "--seed", str(args.seed), "--no-tsne",
                   "--jobs", str(n_jobs), "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}", "--quiet"]
        seconds, rss, _ = peak_rss_mib(command, env, store)
        import sqlite3

        with sqlite3.connect(store / "mlflow.db") as connection:
            rows = connection.execute(
                "select r.name, m.value from runs r join latest_metrics m on r.run_uuid = m.run_uuid "
                "where m.key = 'ari'").fetchall()
        scores[n_jobs] = dict(rows)
        result[f"jobs_{n_jobs}_s"] = seconds
        print(f"| --jobs {n_jobs} | {seconds:.1f} s | peak RSS, sum of its processes {rss:.0f} MiB |", flush=True)
    differences = [abs(scores[1][name] - scores[args.jobs][name]) for name in scores[1]]
    result["max_ari_difference"] = max(differences)
    print(f"--jobs {args.jobs} against --jobs 1: {result[f'jobs_{args.jobs}_s'] / result['jobs_1_s']:.2f}x, "
          f"largest ARI difference {max(differences):.2e}")
    return result


def silhouette(args) -> dict:
    import numpy as np
    from sklearn.datasets import make_blobs
    from sklearn.metrics import silhouette_score

    from aeclust.metrics import silhouette_exact

    X, labels = make_blobs(n_samples=args.n_points, n_features=args.n_features, centers=args.n_clusters,
                           cluster_std=4.0, random_state=0)
    X = X.astype(np.float32)
    start = time.perf_counter()
    ours = silhouette_exact(X, labels)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = float(silhouette_score(X, labels))
    reference_s = time.perf_counter() - start
    print(f"| {args.n_points:,} x {args.n_features} | aeclust {ours_s:.1f} s | scikit-learn {reference_s:.1f} s "
          f"| ratio {ours_s / reference_s:.2f} | difference {abs(ours - reference):.2e} |")
    return {"n_points": args.n_points, "n_features": args.n_features, "aeclust_s": ours_s,
            "sklearn_s": reference_s, "ratio": ours_s / reference_s, "aeclust": ours, "sklearn": reference}


def emnist_sized(dataset: str, n_points: int):
    """Make ``n_points`` 28 x 28 images from the EMNIST .npz file's train images, with their labels.

    Each image is a train image drawn with replacement and shifted by up to
    2 pixels in each direction (seed 0), so the set has EMNIST-balanced's
    train size and classes without being 12 copies of each image.
    """
    import numpy as np

    with np.load(dataset, allow_pickle=False) as archive:
        keep = archive["split"] == 0
        images, labels, mapping = archive["images"][keep], archive["labels"][keep], archive["mapping"]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(images), size=n_points)
    shifts = rng.integers(-2, 3, size=(n_points, 2))
    stack = np.empty((n_points, 28, 28), dtype=np.uint8)
    for row, (pick, (dy, dx)) in enumerate(zip(picks, shifts)):
        stack[row] = np.roll(images[pick], (dy, dx), axis=(0, 1))
    return stack, labels[picks], mapping


def tsne(args) -> dict:
    from sklearn.decomposition import PCA

    from aeclust.embed import tsne_2d

    stack, _, _ = emnist_sized(args.dataset, args.n_points)
    features = PCA(n_components=50, random_state=0).fit_transform(stack.reshape(args.n_points, -1) / 255.0)
    start = time.perf_counter()
    embedding = tsne_2d(features, random_state=0)
    seconds = time.perf_counter() - start
    print(f"| t-SNE of {args.n_points:,} points (50 PCA features) | {seconds:.0f} s | {embedding.shape} |")
    return {"n_points": args.n_points, "seconds": seconds}


def kmeans(args) -> dict:
    """Time scikit-learn's K-means with Lloyd's and with Elkan's algorithm on PCA features."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    stack, labels, _ = emnist_sized(args.dataset, args.n_points)
    X = stack.reshape(args.n_points, -1).astype(np.float32) / 255.0
    n_clusters = len(np.unique(labels))
    rows = []
    print("| features | Lloyd, s | Elkan, s | ratio | iterations (Lloyd, Elkan) | same labels |")
    print("|---|---|---|---|---|---|")
    for dim in args.dims:
        features = PCA(n_components=dim, random_state=0).fit_transform(X)
        fits = {}
        for algorithm in ("lloyd", "elkan"):
            start = time.perf_counter()
            model = KMeans(n_clusters, n_init=args.n_init, random_state=0, algorithm=algorithm).fit(features)
            fits[algorithm] = (time.perf_counter() - start, model)
        (lloyd_s, lloyd), (elkan_s, elkan) = fits["lloyd"], fits["elkan"]
        same = float(np.mean(lloyd.labels_ == elkan.labels_))
        rows.append({"dim": dim, "lloyd_s": lloyd_s, "elkan_s": elkan_s, "same_labels": same,
                     "lloyd_inertia": float(lloyd.inertia_), "elkan_inertia": float(elkan.inertia_)})
        print(f"| {dim} | {lloyd_s:.1f} | {elkan_s:.1f} | {elkan_s / lloyd_s:.2f} | {lloyd.n_iter_}, {elkan.n_iter_} "
              f"| {same:.1%} |", flush=True)
    return {"n_points": args.n_points, "n_init": args.n_init, "rows": rows}


def fullsize(args) -> dict:
    """Run a default sweep + compare on a whole split: a folder as it is, or EMNIST-sized images."""
    import numpy as np

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AECLUST_CACHE_DIR": str(workdir / "array-cache")}
    dataset = args.dataset
    if args.n_points:
        stack, labels, mapping = emnist_sized(args.dataset, args.n_points)
        dataset = str(workdir / f"emnist-sized-{args.n_points}.npz")
        np.savez(dataset, images=stack, labels=labels, mapping=mapping)
    store = Path(tempfile.mkdtemp(dir=workdir, prefix="fullsize-"))
    uri = f"sqlite:///{store / 'mlflow.db'}"
    commands = {
        "sweep": [sys.executable, "-m", "aeclust.cli", "sweep", "--dataset", dataset, "--sample-size", "0",
                  "--tracking-uri", uri],
        "compare": [sys.executable, "-m", "aeclust.cli", "compare", "--dataset", dataset,
                    "--output-dir", str(store / "out"), "--tracking-uri", uri],
    }
    # "images" is the generated .npz file when --n-points made one; "store" contains mlflow.db and out/report.html.
    result = {"dataset": args.dataset, "images": dataset, "n_points": args.n_points, "store": str(store)}
    for name, command in commands.items():
        seconds, rss, output = peak_rss_mib(command, env, store)
        result[f"{name}_s"], result[f"{name}_peak_rss_mib"] = seconds, rss
        (workdir / f"{name}.log").write_text(output, encoding="utf-8")
        print(f"| {name} | {seconds:.0f} s | peak RSS {rss:.0f} MiB |", flush=True)
    result["scores"] = aeclust_scores(store)
    print("| method | latent_dim | ARI | silhouette |\n|---|---|---|---|")
    for row in result["scores"]:
        print(f"| {row['method']} | {row['latent_dim']} | {row['ari']:.4f} | {row['silhouette']:.4f} |")
    print(f"store, logs and report: {store}", file=sys.stderr)
    return result


WORKDIR_HELP = ("Folder for the array cache, MLflow stores, logs and generated images, kept after the run "
                "(default: a new aeclust-bench-* folder in the system's temporary folder).")
EMNIST_HELP = "The EMNIST .npz file (images, labels, split, mapping)."
class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help formatter that shows an option's default unless it has none."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Build the command line: one subcommand per benchmark, with its defaults in the help."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text,
                                  formatter_class=DefaultsHelpFormatter)
        sub.add_argument("--output", required=True, help="JSON file for the results.")
        return sub

    def add_sample_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--dataset", required=True,
                         help="Any aeclust data set: an image folder with one sub-folder per class, an .npz file or a TFDS name.")
        sub.add_argument("--sample-size", type=int, default=5000, help="Images drawn from the split.")
        sub.add_argument("--seed", type=int, default=42, help="Seed of the sample and of every run.")
        sub.add_argument("--workdir", help=WORKDIR_HELP)

    sub = add("study", "Notebook's method against aeclust sweep + compare, alternated.")
    add_sample_options(sub)
    sub.add_argument("--repeats", type=int, default=2, help="Rounds of notebook then aeclust.")
    sub = add("profile", "aeclust sweep + compare once under cProfile.")
    add_sample_options(sub)
    sub = add("jobs", "aeclust sweep --no-tsne with --jobs 1 and with --jobs N.")
    add_sample_options(sub)
    sub.add_argument("--jobs", type=int, default=2, help="Workers of the parallel sweep.")
    sub = add("silhouette", "Exact blocked silhouette against scikit-learn on blobs.")
    sub.add_argument("--n-points", type=int, default=50_000, help="Rows of the features.")
    sub.add_argument("--n-features", type=int, default=64, help="Columns of the features.")
    sub.add_argument("--n-clusters", type=int, default=10, help="Number of blobs, which is also the number of clusters.")
    sub = add("tsne", "openTSNE through aeclust on EMNIST-sized images.")
    sub.add_argument("--dataset", required=True, help=EMNIST_HELP)
    sub.add_argument("--n-points", type=int, default=112_800, help="EMNIST-sized images to make and embed.")
    sub = add("kmeans", "Lloyd's against Elkan's K-means on PCA features of EMNIST-sized images.")
    sub.add_argument("--dataset", required=True, help=EMNIST_HELP)
    sub.add_argument("--n-points", type=int, default=112_800, help="EMNIST-sized images to make.")
    sub.add_argument("--dims", type=int, nargs="+", default=[16, 64, 256], help="PCA feature counts.")
    sub.add_argument("--n-init", type=int, default=2, help="K-means starts per fit.")
    sub = add("fullsize", "Default aeclust sweep + compare on a whole split.")
    sub.add_argument("--dataset", required=True,
                     help="An image folder or .npz file, or with --n-points the EMNIST .npz file.")
    sub.add_argument("--n-points", type=int, default=0,
                     help="Make this many EMNIST-sized images from the .npz file; 0 uses --dataset as it is.")
    sub.add_argument("--workdir", help=WORKDIR_HELP)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    makes_emnist_sized = args.command in ("tsne", "kmeans") or (args.command == "fullsize" and args.n_points)
    if makes_emnist_sized and not args.dataset.endswith(".npz"):
        parser.error(f"--dataset={args.dataset!r} is invalid: EMNIST-sized images are made from the "
                     "EMNIST .npz file, so give its path")
    if makes_emnist_sized and not Path(args.dataset).is_file():
        parser.error(f"--dataset={args.dataset!r} was not found: give the path of the EMNIST .npz file")
    if hasattr(args, "workdir"):
        args.workdir = args.workdir or tempfile.mkdtemp(prefix="aeclust-bench-")
        print(f"work folder (kept): {args.workdir}", file=sys.stderr, flush=True)

    commands_by_name = {"study": study, "profile": profile, "jobs": jobs, "silhouette": silhouette, "tsne": tsne,
                        "kmeans": kmeans, "fullsize": fullsize}
    result = commands_by_name[args.command](args)
    from aeclust.compare import package_versions

    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0], "packages": package_versions()}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
