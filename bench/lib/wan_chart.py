"""The WAN report's chart (bench/lib/wan_report.py draws it with Debian's matplotlib): the
round trips each chain adds over plain, and the throughputs as ratios to the best peer."""

COLORS = {"plain": "#000000", "snigate": "#d62728", "snigate-warm": "#ff7f0e", "snigate-login": "#ff9896",
          "stunnel": "#7f7f7f", "haproxy": "#1f77b4", "nginx": "#2ca02c", "backend-tls": "#9467bd"}


def chart(chains, added, ratios, path, title):
    """chains: those that ran; added, ratios: [(row label, {chain: value})]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chains = [c for c in chains if c in COLORS]
    fig, axes = plt.subplots(1, 2, figsize=(15, 0.22 * len(chains) * max(len(added), len(ratios), 1) + 2.2),
                             gridspec_kw={"width_ratios": [3, 2]})
    panels = ((axes[0], added, [c for c in chains if c != "plain"],
               "round trips added over plain ((median − plain) ÷ RTT)"),
              (axes[1], ratios, chains, "ratio to the best peer (higher is better)"))
    for ax, groups, shown, xlabel in panels:
        bar = 0.8 / max(len(shown), 1)
        for i, c in enumerate(shown):
            ys = [j + (i - (len(shown) - 1) / 2) * bar for j in range(len(groups))]
            ax.barh(ys, [vals.get(c) or 0 for _, vals in groups], height=bar, color=COLORS[c], label=c)
        ax.set_yticks(range(len(groups)))
        ax.set_yticklabels([g[0] for g in groups], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    target = axes[0].axvline(0.3, color="black", lw=1, ls=":")
    axes[1].axvline(1.0, color="black", lw=0.8)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles + [target], labels + ["issue 11 target: ≤ 0.3 added"], loc="lower center",
               ncol=len(labels) + 1, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
