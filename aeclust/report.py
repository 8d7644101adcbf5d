"""The human-readable outputs of compare: ``summary.md`` and ``report.html``, in English or Chinese.

Method names, metric names and other terms of the field stay in English in
both languages.
"""

from __future__ import annotations

import base64
import html
import math

LANGUAGES = ("en", "zh-CN")
SIGNIFICANCE_LEVEL = 0.05
SCORE_COLUMNS = ("silhouette", "ari", "nmi", "acc")

TEXT = {
    "en": {
        "title": "aeclust report: {dataset}",
        "setup": "Setup",
        "sweep": "Sweep run",
        "metric": "Best dimension chosen by",
        "runs": "Runs compared",
        "excluded": "Runs excluded",
        "versions": "Versions",
        "table": "Scores per method and latent dimension (mean ± std over seeds, std with ddof=0)",
        "columns": ("method", "latent_dim", "seeds", "silhouette", "ARI", "NMI", "ACC"),
        "best": "Best latent dimension per method",
        "best_line": "{method}: latent_dim={dim}, mean {metric}={value:.4f}",
        "versus": "Autoencoder against PCA",
        "versus_line": "At the autoencoder's best latent_dim={dim}: ae {metric}={ae:.4f}, "
                       "pca {metric}={pca:.4f} (difference {diff:+.4f}).",
        "versus_missing": "There is no PCA run at latent_dim={dim}, so the two cannot be compared there.",
        "test_none": "With {n} seed(s) per method at latent_dim={dim}, no test is possible: "
                     "run the sweep with several --seeds to test the difference.",
        "test_flat": "The {n} paired differences are all equal ({diff:+.4f}), so the t-test is undefined.",
        "test_line": "Paired t-test across {n} seeds at latent_dim={dim}: t={t:.3f}, {p}.",
        "better": "The autoencoder beats PCA beyond the seed-to-seed spread (p < {alpha}).",
        "worse": "PCA beats the autoencoder beyond the seed-to-seed spread (p < {alpha}).",
        "same": "The difference is within the seed-to-seed spread (p ≥ {alpha}): neither method wins.",
        "untested": "Without a test, the difference may be seed noise.",
        "conclusion": "Conclusion",
        "dimension": "Scores against latent dimension",
        "figures": "Best {method} run (latent_dim={dim})",
        "tsne": "t-SNE of the features, coloured by true class and by cluster",
        "confusion": "True class against cluster, clusters matched to classes (Hungarian)",
        "reconstructions": "Reconstructions: inputs above, autoencoder outputs below",
        "gallery": "Cluster gallery: 8 images nearest each centroid, with majority class and purity",
        "classes": "Most confused classes ({method}, best run)",
        "classes_columns": ("true class", "clustered as", "images", "share"),
        "pairs": "Class pairs whose images most often share a cluster ({method}, best run)",
        "pairs_columns": ("pair", "image pairs in one cluster", "of", "rate"),
        "none": "none",
    },
    "zh-CN": {
        "title": "aeclust 报告：{dataset}",
        "setup": "实验设置",
        "sweep": "Sweep 运行",
        "metric": "选择最佳维度所依据的指标",
        "runs": "参与比较的运行数",
        "excluded": "被排除的运行",
        "versions": "软件版本",
        "table": "各方法在各 latent dimension 上的得分（各 seed 的均值 ± 标准差，标准差按 ddof=0 计算）",
        "columns": ("方法", "latent_dim", "seed 数", "silhouette", "ARI", "NMI", "ACC"),
        "best": "各方法的最佳 latent dimension",
        "best_line": "{method}：latent_dim={dim}，{metric} 均值={value:.4f}",
        "versus": "autoencoder 与 PCA 的比较",
        "versus_line": "在 autoencoder 的最佳维度 latent_dim={dim} 上：ae {metric}={ae:.4f}，"
                       "pca {metric}={pca:.4f}（差值 {diff:+.4f}）。",
        "versus_missing": "latent_dim={dim} 上没有 PCA 运行，无法在该维度比较两者。",
        "test_none": "latent_dim={dim} 上每种方法只有 {n} 个 seed，无法进行检验："
                     "请用多个 --seeds 运行 sweep 来检验差异。",
        "test_flat": "{n} 个配对差值完全相同（{diff:+.4f}），t 检验无定义。",
        "test_line": "latent_dim={dim} 上跨 {n} 个 seed 的配对 t 检验：t={t:.3f}，{p}。",
        "better": "autoencoder 优于 PCA，且差异超出 seed 间的波动（p < {alpha}）。",
        "worse": "PCA 优于 autoencoder，且差异超出 seed 间的波动（p < {alpha}）。",
        "same": "差异在 seed 间的波动范围之内（p ≥ {alpha}），两种方法没有明确的胜负。",
        "untested": "未做检验，这一差异可能只是 seed 带来的噪声。",
        "conclusion": "结论",
        "dimension": "得分随 latent dimension 的变化",
        "figures": "{method} 的最佳运行（latent_dim={dim}）",
        "tsne": "特征的 t-SNE 图，分别按真实类别和聚类着色",
        "confusion": "真实类别与聚类的对照（用匈牙利算法把聚类匹配到类别）",
        "reconstructions": "重建结果：上排为输入，下排为 autoencoder 的输出",
        "gallery": "聚类图库：每个聚类中距质心最近的 8 张图像，标注多数类别与纯度",
        "classes": "最常被混淆的类别（{method}，最佳运行）",
        "classes_columns": ("真实类别", "被聚为", "图像数", "比例"),
        "pairs": "图像最常落入同一聚类的类别对（{method}，最佳运行）",
        "pairs_columns": ("类别对", "同一聚类中的图像对", "总图像对", "比例"),
        "none": "无",
    },
}


def _cell(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.4f} ± {std:.4f}"


def conclusion(summary: dict, *, language: str = "en") -> list[str]:
    """Write the plain-language conclusion: best dims, AE against PCA, and the test's verdict."""
    text = TEXT[language]
    metric = summary["metric"]
    sentences = [
        text["best_line"].format(method=method, dim=best["latent_dim"], metric=metric, value=best[metric])
        for method, best in sorted(summary["best"].items())
    ]
    comparison = summary.get("ae_vs_pca")
    if comparison is None:
        return sentences
    dim = comparison["latent_dim"]
    if comparison["pca"] is None:
        sentences.append(text["versus_missing"].format(dim=dim))
        return sentences

    sentences.append(
        text["versus_line"].format(
            dim=dim, metric=metric, ae=comparison["ae"], pca=comparison["pca"], diff=comparison["difference"]
        )
    )
    test = comparison.get("test") or {"n": 1}
    if test["n"] < 2:
        sentences.append(text["test_none"].format(n=test["n"], dim=dim))
        sentences.append(text["untested"])
    elif test["p_value"] is None:
        sentences.append(text["test_flat"].format(n=test["n"], diff=test["mean_difference"]))
    else:
        p_text = "p < 0.0001" if test["p_value"] < 1e-4 else f"p={test['p_value']:.4f}"
        sentences.append(text["test_line"].format(n=test["n"], dim=dim, t=test["statistic"], p=p_text))
        if test["p_value"] >= SIGNIFICANCE_LEVEL:
            sentences.append(text["same"].format(alpha=SIGNIFICANCE_LEVEL))
        elif test["mean_difference"] > 0:
            sentences.append(text["better"].format(alpha=SIGNIFICANCE_LEVEL))
        else:
            sentences.append(text["worse"].format(alpha=SIGNIFICANCE_LEVEL))
    return sentences


def _setup_items(summary: dict, text: dict) -> list[tuple[str, str]]:
    items = [(key, str(value)) for key, value in summary["setup"].items()]
    items.append((text["sweep"], summary["sweep_run_id"]))
    items.append((text["metric"], summary["metric"]))
    items.append((text["runs"], str(summary["n_runs"])))
    if summary["excluded_runs"]:
        excluded = ", ".join(f"{count} ({reason})" for reason, count in summary["excluded_runs"].items())
        items.append((text["excluded"], excluded))
    versions = summary.get("versions")
    if versions:
        items.append((text["versions"], ", ".join(f"{name} {version}" for name, version in versions.items())))
    return items


def _table_rows(summary: dict) -> list[list[str]]:
    return [
        [row["method"], str(row["latent_dim"]), str(row["n_seeds"])]
        + [_cell(row[metric], row[f"{metric}_std"]) for metric in SCORE_COLUMNS]
        for row in summary["table"]
    ]


def _class_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [row["class_a"], row["class_b"], f"{row['count']} / {row['total']}", f"{row['rate']:.1%}"]
        for row in rows
    ]


def _pair_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [f"{row['class_a']} ↔ {row['class_b']}", str(row["count"]), str(row["total"]), f"{row['rate']:.1%}"]
        for row in rows
    ]


def _markdown_table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def summary_markdown(summary: dict, *, language: str = "en") -> str:
    """Render a compare summary as Markdown.

    Parameters
    ----------
    summary : dict
        The summary that :func:`aeclust.compare.build_summary` builds.
    language : {"en", "zh-CN"}, default="en"
        Language of the headings and sentences.
    """
    text = TEXT[language]
    lines = [f"# {text['title'].format(dataset=summary['dataset'])}", "", f"## {text['setup']}", ""]
    lines += [f"- {key}: {value}" for key, value in _setup_items(summary, text)]
    lines += ["", f"## {text['table']}", ""]
    lines += _markdown_table(text["columns"], _table_rows(summary))
    lines += ["", f"## {text['conclusion']}", ""]
    lines += [f"- {sentence}" for sentence in conclusion(summary, language=language)]

    for method, confusions in sorted(summary["confused_pairs"].items()):
        lines += ["", f"## {text['classes'].format(method=method)}", ""]
        if confusions["classes"]:
            lines += _markdown_table(text["classes_columns"], _class_rows(confusions["classes"]))
        else:
            lines.append(text["none"])
        lines += ["", f"## {text['pairs'].format(method=method)}", ""]
        if confusions["pairs"]:
            lines += _markdown_table(text["pairs_columns"], _pair_rows(confusions["pairs"]))
        else:
            lines.append(text["none"])
    return "\n".join(lines) + "\n"


STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.3em 0 1em; }
figcaption { font-size: 0.9em; color: #555; }
.conclusion { background: #f6f8fa; border-left: 4px solid #4a7; padding: 0.5em 1em; }
"""


def _html_table(columns, rows) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_figure(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def report_html(summary: dict, figures: dict, *, language: str = "en") -> str:
    """Render the report as one self-contained HTML page, images embedded as data URIs.

    Parameters
    ----------
    summary : dict
        The summary that :func:`aeclust.compare.build_summary` builds.
    figures : dict of str to bytes
        PNG files: ``dimension`` for the score plot and ``<method>/<artifact>``
        for the best runs' figures (``tsne.png``, ``confusion_matrix.png``,
        ``reconstructions.png``, ``cluster_gallery.png``).
    language : {"en", "zh-CN"}, default="en"
        Language of the headings and sentences.
    """
    text = TEXT[language]
    title = text["title"].format(dataset=summary["dataset"])
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{language}"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<h2>{text['conclusion']}</h2><div class=\"conclusion\"><ul>",
    ]
    parts += [f"<li>{html.escape(sentence)}</li>" for sentence in conclusion(summary, language=language)]
    parts.append("</ul></div>")

    parts.append(f"<h2>{text['setup']}</h2><ul>")
    parts += [
        f"<li><b>{html.escape(key)}</b>: {html.escape(value)}</li>"
        for key, value in _setup_items(summary, text)
    ]
    parts.append("</ul>")

    parts.append(f"<h2>{text['table']}</h2>")
    parts.append(_html_table(text["columns"], _table_rows(summary)))
    if "dimension" in figures:
        parts.append(f"<h2>{text['dimension']}</h2>")
        parts.append(_html_figure(figures["dimension"], text["dimension"]))

    captions = (
        ("tsne.png", "tsne"),
        ("confusion_matrix.png", "confusion"),
        ("reconstructions.png", "reconstructions"),
        ("cluster_gallery.png", "gallery"),
    )
    for method, best in sorted(summary["best"].items()):
        parts.append(f"<h2>{html.escape(text['figures'].format(method=method, dim=best['latent_dim']))}</h2>")
        for artifact, key in captions:
            png = figures.get(f"{method}/{artifact}")
            if png is not None:
                parts.append(_html_figure(png, text[key]))
        confusions = summary["confused_pairs"].get(method, {"classes": [], "pairs": []})
        parts.append(f"<h3>{html.escape(text['pairs'].format(method=method))}</h3>")
        parts.append(_html_table(text["pairs_columns"], _pair_rows(confusions["pairs"])))
        parts.append(f"<h3>{html.escape(text['classes'].format(method=method))}</h3>")
        parts.append(_html_table(text["classes_columns"], _class_rows(confusions["classes"])))

    parts.append("</body></html>")
    return "\n".join(parts)
