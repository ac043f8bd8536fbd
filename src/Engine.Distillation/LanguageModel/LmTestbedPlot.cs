using System.Globalization;
using System.Text;

namespace Engine.Distillation.LanguageModel;

/// <summary>
/// The testbed's curves as a standalone SVG: one panel per regime, x = optimizer step, y = mean over seeds of
/// KL(oracle ‖ student) on a log scale, one line per method, the teacher's KL(oracle ‖ teacher) dashed.
/// </summary>
public static class LmTestbedPlot
{
    private static readonly string[] Colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

    /// <summary>The SVG document for <paramref name="result"/>.</summary>
    public static string ToSvg(LmTestbedResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var s = result.Settings;
        const double panelW = 420, panelH = 300, left = 60, top = 40, plotW = 330, plotH = 210, legendH = 22;
        int panels = s.Regimes.Count;
        double width = panels * panelW, height = panelH + legendH * ((s.Methods.Count + 3) / 4) + 10;
        var curves = new List<(LmRegime Regime, LmMethod Method, (double Step, double Kl)[] Points)>();
        foreach (var regime in s.Regimes)
            foreach (var method in s.Methods)
            {
                var runs = result.Runs.Where(r => r.Regime == regime && r.Method == method).ToArray();
                if (runs.Length == 0) continue;
                var pts = Enumerable.Range(0, runs[0].Curve.Count)
                    .Select(i => ((double)runs[0].Curve[i].Step, runs.Average(r => r.Curve[i].KlToOracle))).ToArray();
                curves.Add((regime, method, pts));
            }
        var all = curves.SelectMany(c => c.Points.Select(p => p.Kl)).Append(result.TeacherKl).Where(v => v > 0 && double.IsFinite(v)).ToArray();
        double yMin = all.Length == 0 ? 0.01 : all.Min() / 1.2, yMax = all.Length == 0 ? 1 : all.Max() * 1.2;
        double lMin = Math.Log10(yMin), lMax = Math.Log10(yMax);
        double xMax = Math.Max(1, s.Steps);
        var sb = new StringBuilder();
        void W(FormattableString f) => sb.Append(f.ToString(CultureInfo.InvariantCulture));
        W($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n");
        W($"<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        for (int p = 0; p < panels; p++)
        {
            var regime = s.Regimes[p];
            double ox = p * panelW + left, oy = top;
            double X(double step) => ox + step / xMax * plotW;
            double Y(double kl) => oy + (lMax - Math.Log10(Math.Max(kl, yMin))) / (lMax - lMin) * plotH;
            W($"<text x=\"{ox + plotW / 2}\" y=\"{top - 18}\" text-anchor=\"middle\" font-size=\"13\">{LmTestbed.Name(regime)}: KL(oracle ‖ student), mean of {s.Seeds} seed(s)</text>\n");
            W($"<rect x=\"{ox}\" y=\"{oy}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"black\"/>\n");
            for (int e = (int)Math.Floor(lMin); e <= (int)Math.Ceiling(lMax); e++)
                foreach (var m in new[] { 1.0, 2.0, 5.0 })
                {
                    double v = m * Math.Pow(10, e);
                    if (v < yMin || v > yMax) continue;
                    double y = Y(v);
                    W($"<line x1=\"{ox}\" y1=\"{y:F1}\" x2=\"{ox + plotW}\" y2=\"{y:F1}\" stroke=\"#ddd\"/>\n");
                    W($"<text x=\"{ox - 5}\" y=\"{y + 4:F1}\" text-anchor=\"end\">{v:G3}</text>\n");
                }
            for (int i = 0; i <= 4; i++)
            {
                double step = xMax * i / 4;
                W($"<text x=\"{X(step):F1}\" y=\"{oy + plotH + 15}\" text-anchor=\"middle\">{step:F0}</text>\n");
            }
            W($"<text x=\"{ox + plotW / 2}\" y=\"{oy + plotH + 32}\" text-anchor=\"middle\">step</text>\n");
            double ty = Y(result.TeacherKl);
            W($"<line x1=\"{ox}\" y1=\"{ty:F1}\" x2=\"{ox + plotW}\" y2=\"{ty:F1}\" stroke=\"black\" stroke-dasharray=\"5,4\"/>\n");
            W($"<text x=\"{ox + plotW - 3}\" y=\"{ty - 4:F1}\" text-anchor=\"end\">teacher</text>\n");
            foreach (var c in curves.Where(c => c.Regime == regime))
            {
                string color = Colors[s.Methods.ToList().IndexOf(c.Method) % Colors.Length];
                string points = string.Join(" ", c.Points.Select(pt => string.Create(CultureInfo.InvariantCulture, $"{X(pt.Step):F1},{Y(pt.Kl):F1}")));
                W($"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{points}\"/>\n");
            }
        }
        for (int i = 0; i < s.Methods.Count; i++)
        {
            double lx = 20 + (i % 4) * 160, ly = panelH + (i / 4) * legendH;
            W($"<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{lx + 24}\" y2=\"{ly}\" stroke=\"{Colors[i % Colors.Length]}\" stroke-width=\"2\"/>\n");
            W($"<text x=\"{lx + 30}\" y=\"{ly + 4}\">{LmDistillationLoss.Name(s.Methods[i])}</text>\n");
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }
}
