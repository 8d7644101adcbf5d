"""The human-readable summary of a compare, in English or Simplified Chinese."""

from __future__ import annotations

import math

LANGUAGES = ("en", "zh-CN")

TEXT = {
    "en": {
        "title": "aeclust summary: {dataset}",
        "setup": "Setup",
        "sweep": "Sweep run",
        "metric": "Best dimension chosen by",
        "runs": "Runs compared",
        "excluded": "Runs excluded",
        "table": "Scores per method and latent dimension (mean ± std over seeds)",
        "best": "Best latent dimension per method",
        "versus": "Autoencoder against PCA at the autoencoder's best dimension",
        "versus_line": "At latent_dim={dim}: ae {metric}={ae:.4f}, pca {metric}={pca:.4f} "
                       "(difference {diff:+.4f}).",
        "versus_missing": "No PCA run at latent_dim={dim}, so there is nothing to compare.",
        "pairs": "Most confused classes ({method}, best run)",
        "pairs_header": "| true class | clustered as | images | share |",
        "none": "none",
        "columns": "| method | latent_dim | seeds | silhouette | ARI | NMI | ACC |",
    },
    "zh-CN": {
        "title": "aeclust 汇总：{dataset}",
        "setup": "实验设置",
        "sweep": "Sweep 运行",
        "metric": "选择最佳维度所依据的指标",
        "runs": "参与比较的运行数",
        "excluded": "被排除的运行",
        "table": "各方法与 latent dimension 的得分（各 seed 的均值 ± 标准差）",
        "best": "各方法的最佳 latent dimension",
        "versus": "在 autoencoder 最佳维度上，autoencoder 与 PCA 的比较",
        "versus_line": "latent_dim={dim} 时：ae {metric}={ae:.4f}，pca {metric}={pca:.4f}"
                       "（差值 {diff:+.4f}）。",
        "versus_missing": "latent_dim={dim} 没有 PCA 运行，无法比较。",
        "pairs": "最常被混淆的类别（{method}，最佳运行）",
        "pairs_header": "| 真实类别 | 被聚为 | 图像数 | 比例 |",
        "none": "无",
        "columns": "| 方法 | latent_dim | seed 数 | silhouette | ARI | NMI | ACC |",
    },
}


def _cell(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.4f} ± {std:.4f}"


def summary_markdown(summary: dict, *, language: str = "en") -> str:
    """Render a compare summary as Markdown.

    Parameters
    ----------
    summary : dict
        The summary that :func:`aeclust.compare.build_summary` builds.
    language : {"en", "zh-CN"}, default="en"
        Language of the headings and sentences; names and terms of the field
        (method names, metric names) stay in English.
    """
    text = TEXT[language]
    metric = summary["metric"]
    lines = [f"# {text['title'].format(dataset=summary['dataset'])}", "", f"## {text['setup']}", ""]
    for key, value in summary["setup"].items():
        lines.append(f"- {key}: {value}")
    lines.append(f"- {text['sweep']}: `{summary['sweep_run_id']}`")
    lines.append(f"- {text['metric']}: {metric}")
    lines.append(f"- {text['runs']}: {summary['n_runs']}")
    if summary["excluded_runs"]:
        excluded = ", ".join(f"{count} ({reason})" for reason, count in summary["excluded_runs"].items())
        lines.append(f"- {text['excluded']}: {excluded}")

    lines += ["", f"## {text['table']}", "", text["columns"], "|---|---|---|---|---|---|---|"]
    for row in summary["table"]:
        cells = [_cell(row[m], row[f"{m}_std"]) for m in ("silhouette", "ari", "nmi", "acc")]
        lines.append(f"| {row['method']} | {row['latent_dim']} | {row['n_seeds']} | " + " | ".join(cells) + " |")

    lines += ["", f"## {text['best']}", ""]
    for method, best in sorted(summary["best"].items()):
        lines.append(f"- {method}: latent_dim={best['latent_dim']}, {metric}={best[metric]:.4f}")

    comparison = summary.get("ae_vs_pca")
    if comparison is not None:
        lines += ["", f"## {text['versus']}", ""]
        if comparison["pca"] is None:
            lines.append(text["versus_missing"].format(dim=comparison["latent_dim"]))
        else:
            lines.append(
                text["versus_line"].format(
                    dim=comparison["latent_dim"], metric=metric, ae=comparison["ae"],
                    pca=comparison["pca"], diff=comparison["difference"],
                )
            )

    for method, pairs in sorted(summary["confused_pairs"].items()):
        lines += ["", f"## {text['pairs'].format(method=method)}", ""]
        if not pairs:
            lines.append(text["none"])
            continue
        lines += [text["pairs_header"], "|---|---|---|---|"]
        for pair in pairs:
            lines.append(
                f"| {pair['true_class']} | {pair['confused_with']} | "
                f"{pair['count']} / {pair['class_size']} | {pair['share']:.1%} |"
            )
    return "\n".join(lines) + "\n"
