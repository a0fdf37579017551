"""The soak's plot: fault windows and task throughput over time, and the RSS and open fds of
every gateway replica and sidecar."""
import collections

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(path, faults, sends, executions, samples, t0):
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(14, 10), sharex=True)
    colors = dict(zip(sorted({f["kind"] for f in faults}), plt.cm.tab10.colors))
    for f in faults:
        ax1.axvspan(f["start"] - t0, max(f["end"], f["start"] + 0.5) - t0, alpha=0.3,
                    color=colors[f["kind"]], label=f["kind"])
    bin_s = 5
    for label, times in list(sends.items()) + list(executions.items()):
        counts = collections.Counter(int((t - t0) // bin_s) for t in times)
        xs = sorted(counts)
        ax1.plot([x * bin_s for x in xs], [counts[x] / bin_s for x in xs], label=label)
    handles, labels = ax1.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax1.legend(unique.values(), unique.keys(), fontsize=7, ncol=4, loc="upper right")
    ax1.set_ylabel("tasks / s")
    ax1.set_title("faults and task throughput")
    for name in dict.fromkeys(s["name"] for s in samples):
        mine = [s for s in samples if s["name"] == name]
        xs = [s["t"] - t0 for s in mine]
        ax2.plot(xs, [s["rss_kib"] / 1024 for s in mine], label=name)
        ax3.plot(xs, [s["fds"] for s in mine], label=name)
    ax2.set_ylabel("RSS (MiB)")
    ax3.set_ylabel("open fds")
    ax3.set_xlabel("seconds since the first fault")
    for ax in (ax2, ax3):
        if len(ax.get_lines()) <= 12:
            ax.legend(fontsize=7, ncol=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
