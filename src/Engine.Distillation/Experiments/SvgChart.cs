using System.Globalization;
using System.Security;
using System.Text;

namespace Engine.Distillation.Experiments;

/// <summary>A bar of <see cref="SvgChart.Bars"/>: a label, a value and an error half-width (e.g. the std over seeds).</summary>
/// <param name="Label">The category under the bar.</param>
/// <param name="Value">The bar's height.</param>
/// <param name="Error">Half the error bar's length (0: none).</param>
public readonly record struct BarValue(string Label, double Value, double Error);

/// <summary>A line of <see cref="SvgChart.Lines"/>: a legend label and its points in x order.</summary>
/// <param name="Label">The legend entry.</param>
/// <param name="Points">(x, y) points.</param>
public sealed record LineSeries(string Label, IReadOnlyList<(double X, double Y)> Points);

/// <summary>
/// Minimal SVG charts written by hand (no dependency): a bar chart with error bars and a line chart
/// with a legend. The output is a standalone, well-formed SVG 1.1 document (text XML-escaped, numbers
/// in invariant culture), viewable in a browser or embedded in Markdown.
/// </summary>
public static class SvgChart
{
    private const int Width = 720, Height = 420, Left = 70, Right = 20, Top = 40, Bottom = 90;

    /// <summary>Ten distinguishable colours (matplotlib's tab10), cycled.</summary>
    public static IReadOnlyList<string> Palette { get; } =
        ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

    /// <summary>A bar chart of <paramref name="bars"/> with error bars; the y axis spans the values and errors with a margin (not from 0, so small differences show).</summary>
    public static string Bars(string title, string yLabel, IReadOnlyList<BarValue> bars)
    {
        ArgumentNullException.ThrowIfNull(bars);
        var values = bars.SelectMany(b => new[] { b.Value - b.Error, b.Value + b.Error }).Where(double.IsFinite).ToList();
        var (lo, hi) = Range(values);
        var sb = Begin(title);
        Axes(sb, lo, hi, yLabel);
        double plotW = Width - Left - Right;
        double slot = plotW / Math.Max(1, bars.Count);
        for (int i = 0; i < bars.Count; i++)
        {
            var b = bars[i];
            double x0 = Left + i * slot + slot * 0.15, w = slot * 0.7;
            double y = Y(b.Value, lo, hi), y0 = Y(lo, lo, hi);
            if (double.IsFinite(b.Value))
            {
                sb.Append(F($"<rect x=\"{x0:F1}\" y=\"{Math.Min(y, y0):F1}\" width=\"{w:F1}\" height=\"{Math.Abs(y0 - y):F1}\" fill=\"{Palette[i % Palette.Count]}\" />\n"));
                if (b.Error > 0 && double.IsFinite(b.Error))
                {
                    double cx = x0 + w / 2, ya = Y(b.Value - b.Error, lo, hi), yb = Y(b.Value + b.Error, lo, hi);
                    sb.Append(F($"<line x1=\"{cx:F1}\" y1=\"{ya:F1}\" x2=\"{cx:F1}\" y2=\"{yb:F1}\" stroke=\"black\" />\n"));
                    sb.Append(F($"<line x1=\"{cx - 6:F1}\" y1=\"{ya:F1}\" x2=\"{cx + 6:F1}\" y2=\"{ya:F1}\" stroke=\"black\" />\n"));
                    sb.Append(F($"<line x1=\"{cx - 6:F1}\" y1=\"{yb:F1}\" x2=\"{cx + 6:F1}\" y2=\"{yb:F1}\" stroke=\"black\" />\n"));
                }
                sb.Append(F($"<text x=\"{x0 + w / 2:F1}\" y=\"{Math.Min(y, Y(b.Value + Math.Max(0, b.Error), lo, hi)) - 4:F1}\" font-size=\"11\" text-anchor=\"middle\">{Num(b.Value)}</text>\n"));
            }
            double lx = x0 + w / 2, ly = Height - Bottom + 16;
            sb.Append(F($"<text x=\"{lx:F1}\" y=\"{ly:F1}\" font-size=\"12\" text-anchor=\"end\" transform=\"rotate(-30 {lx:F1} {ly:F1})\">{Esc(b.Label)}</text>\n"));
        }
        return End(sb);
    }

    /// <summary>A line chart of <paramref name="series"/> with a legend; axes span the data.</summary>
    public static string Lines(string title, string xLabel, string yLabel, IReadOnlyList<LineSeries> series)
    {
        ArgumentNullException.ThrowIfNull(series);
        var xs = series.SelectMany(s => s.Points.Select(p => p.X)).Where(double.IsFinite).ToList();
        var ys = series.SelectMany(s => s.Points.Select(p => p.Y)).Where(double.IsFinite).ToList();
        var (lo, hi) = Range(ys);
        double xlo = xs.Count == 0 ? 0 : xs.Min(), xhi = xs.Count == 0 ? 1 : xs.Max();
        if (xhi <= xlo) xhi = xlo + 1;
        var sb = Begin(title);
        Axes(sb, lo, hi, yLabel);
        double plotW = Width - Left - Right;
        double X(double x) => Left + (x - xlo) / (xhi - xlo) * plotW;
        foreach (var x in Ticks(xlo, xhi))
        {
            sb.Append(F($"<line x1=\"{X(x):F1}\" y1=\"{Height - Bottom:F1}\" x2=\"{X(x):F1}\" y2=\"{Height - Bottom + 5:F1}\" stroke=\"black\" />\n"));
            sb.Append(F($"<text x=\"{X(x):F1}\" y=\"{Height - Bottom + 18:F1}\" font-size=\"11\" text-anchor=\"middle\">{Num(x)}</text>\n"));
        }
        sb.Append(F($"<text x=\"{Left + plotW / 2:F1}\" y=\"{Height - Bottom + 36:F1}\" font-size=\"12\" text-anchor=\"middle\">{Esc(xLabel)}</text>\n"));
        for (int i = 0; i < series.Count; i++)
        {
            string colour = Palette[i % Palette.Count];
            var pts = series[i].Points.Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
            if (pts.Count > 0)
            {
                sb.Append(F($"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{string.Join(" ", pts.Select(p => F($"{X(p.X):F1},{Y(p.Y, lo, hi):F1}")))}\" />\n"));
                foreach (var p in pts) sb.Append(F($"<circle cx=\"{X(p.X):F1}\" cy=\"{Y(p.Y, lo, hi):F1}\" r=\"2.5\" fill=\"{colour}\" />\n"));
            }
            int col = i % 4, row = i / 4;
            double lx = Left + col * 160, ly = Height - Bottom + 54 + row * 16;
            sb.Append(F($"<rect x=\"{lx:F1}\" y=\"{ly - 9:F1}\" width=\"12\" height=\"10\" fill=\"{colour}\" />\n"));
            sb.Append(F($"<text x=\"{lx + 16:F1}\" y=\"{ly:F1}\" font-size=\"12\">{Esc(series[i].Label)}</text>\n"));
        }
        return End(sb);
    }

    private static StringBuilder Begin(string title)
    {
        var sb = new StringBuilder();
        sb.Append("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        sb.Append(F($"<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\">\n"));
        sb.Append(F($"<rect x=\"0\" y=\"0\" width=\"{Width}\" height=\"{Height}\" fill=\"white\" />\n"));
        sb.Append(F($"<text x=\"{Width / 2}\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">{Esc(title)}</text>\n"));
        return sb;
    }

    private static string End(StringBuilder sb) => sb.Append("</svg>\n").ToString();

    private static void Axes(StringBuilder sb, double lo, double hi, string yLabel)
    {
        sb.Append(F($"<line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{Height - Bottom}\" stroke=\"black\" />\n"));
        sb.Append(F($"<line x1=\"{Left}\" y1=\"{Height - Bottom}\" x2=\"{Width - Right}\" y2=\"{Height - Bottom}\" stroke=\"black\" />\n"));
        foreach (var t in Ticks(lo, hi))
        {
            double y = Y(t, lo, hi);
            sb.Append(F($"<line x1=\"{Left - 5}\" y1=\"{y:F1}\" x2=\"{Width - Right}\" y2=\"{y:F1}\" stroke=\"#dddddd\" />\n"));
            sb.Append(F($"<text x=\"{Left - 8}\" y=\"{y + 4:F1}\" font-size=\"11\" text-anchor=\"end\">{Num(t)}</text>\n"));
        }
        double cy = (Top + Height - Bottom) / 2.0;
        sb.Append(F($"<text x=\"16\" y=\"{cy:F1}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 16 {cy:F1})\">{Esc(yLabel)}</text>\n"));
    }

    private static (double Lo, double Hi) Range(IReadOnlyCollection<double> values)
    {
        if (values.Count == 0) return (0, 1);
        double lo = values.Min(), hi = values.Max();
        double pad = Math.Max((hi - lo) * 0.1, Math.Max(Math.Abs(hi) * 1e-3, 1e-9));
        return (lo - pad, hi + pad);
    }

    private static double Y(double v, double lo, double hi) => Height - Bottom - (v - lo) / (hi - lo) * (Height - Bottom - Top);

    /// <summary>About five round tick values in [lo, hi].</summary>
    private static IEnumerable<double> Ticks(double lo, double hi)
    {
        double raw = (hi - lo) / 5, mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = raw / mag < 2 ? 2 * mag : raw / mag < 5 ? 5 * mag : 10 * mag;
        if (step / raw > 2.5) step /= 2;
        for (double t = Math.Ceiling(lo / step) * step; t <= hi + step * 1e-9; t += step) yield return Math.Round(t / step) * step;
    }

    private static string Num(double v) => v.ToString(Math.Abs(v) >= 100 || v == Math.Round(v) ? "0.##" : "0.###", CultureInfo.InvariantCulture);

    private static string Esc(string s) => SecurityElement.Escape(s) ?? "";

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
