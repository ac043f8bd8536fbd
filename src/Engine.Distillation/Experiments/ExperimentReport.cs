using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Engine.Distillation.Experiments;

/// <summary>
/// What an experiment produced: a Markdown table, notes, SVG charts and raw per-run records. Written
/// by <see cref="WriteTo"/> as <c>results.md</c> (title, command, table, notes, links to the charts),
/// one <c>.svg</c> per chart and <c>runs.jsonl</c> (one JSON object per run).
/// </summary>
public sealed class ExperimentReport(string name, string title)
{
    /// <summary>The experiment's registry name.</summary>
    public string Name { get; } = name;

    /// <summary>A one-line title.</summary>
    public string Title { get; } = title;

    /// <summary>The command line that produced it (written under the title).</summary>
    public string? Command { get; set; }

    /// <summary>The table's column headers.</summary>
    public List<string> Columns { get; } = [];

    /// <summary>The table's rows (cells in column order).</summary>
    public List<string[]> Rows { get; } = [];

    /// <summary>Lines written under the table.</summary>
    public List<string> Notes { get; } = [];

    /// <summary>Charts: file name (ending .svg) and SVG text.</summary>
    public List<(string FileName, string Svg)> Charts { get; } = [];

    /// <summary>One record per run (serialized as JSON lines).</summary>
    public List<Dictionary<string, object>> Records { get; } = [];

    /// <summary>The table in GitHub Markdown (numbers right-aligned after the first column).</summary>
    public string MarkdownTable()
    {
        var sb = new StringBuilder();
        sb.Append("| ").Append(string.Join(" | ", Columns.Select(Cell))).Append(" |\n");
        sb.Append('|').Append(string.Join("|", Columns.Select((_, i) => i == 0 ? "---" : "---:"))).Append("|\n");
        foreach (var r in Rows) sb.Append("| ").Append(string.Join(" | ", r.Select(Cell))).Append(" |\n");
        return sb.ToString();
    }

    /// <summary>The whole <c>results.md</c>.</summary>
    public string Markdown()
    {
        var sb = new StringBuilder();
        sb.Append("# ").Append(Title).Append("\n\n");
        if (Command is not null) sb.Append("Command: `").Append(Command).Append("`\n\n");
        sb.Append(MarkdownTable()).Append('\n');
        foreach (var n in Notes) sb.Append("- ").Append(n).Append('\n');
        if (Notes.Count > 0) sb.Append('\n');
        foreach (var (file, _) in Charts) sb.Append("![").Append(Path.GetFileNameWithoutExtension(file)).Append("](").Append(file).Append(")\n\n");
        return sb.ToString();
    }

    /// <summary>Writes results.md, the charts and runs.jsonl into <paramref name="directory"/> (created). Returns the path of results.md.</summary>
    public string WriteTo(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        foreach (var (file, svg) in Charts) File.WriteAllText(Path.Combine(directory, file), svg);
        File.WriteAllLines(Path.Combine(directory, "runs.jsonl"), Records.Select(r => JsonSerializer.Serialize(r)));
        string md = Path.Combine(directory, "results.md");
        File.WriteAllText(md, Markdown());
        return md;
    }

    /// <summary>"mean ± std" of <paramref name="xs"/> (sample std, n − 1; 0 for one value) scaled by <paramref name="scale"/>.</summary>
    public static string MeanStd(IReadOnlyList<double> xs, double scale = 100, string format = "F2")
    {
        ArgumentNullException.ThrowIfNull(xs);
        var (mean, std) = Stats(xs);
        return (mean * scale).ToString(format, CultureInfo.InvariantCulture) + " ± " + (std * scale).ToString(format, CultureInfo.InvariantCulture);
    }

    /// <summary>Mean and sample standard deviation (n − 1; 0 for fewer than two values).</summary>
    public static (double Mean, double Std) Stats(IReadOnlyList<double> xs)
    {
        ArgumentNullException.ThrowIfNull(xs);
        if (xs.Count == 0) return (double.NaN, double.NaN);
        double mean = xs.Average();
        double std = xs.Count < 2 ? 0 : Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (xs.Count - 1));
        return (mean, std);
    }

    private static string Cell(string s) => s.Replace("|", "\\|", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal);
}
