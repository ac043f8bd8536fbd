using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Engine.Distillation.LanguageModel;

/// <summary>What <see cref="LmTestbed.Run"/> measured, with its Markdown table and JSON-lines forms.</summary>
/// <param name="Settings">The settings of the run.</param>
/// <param name="OracleTemperature">The oracle's calibrated τ.</param>
/// <param name="OracleEntropy">The oracle's mean next-token entropy (nats) on the held-out sequences.</param>
/// <param name="UniformKl">KL(oracle ‖ uniform) = ln V − entropy: what a model that knows nothing scores.</param>
/// <param name="TeacherKl">The teacher's mean KL(oracle ‖ teacher).</param>
/// <param name="TeacherSeconds">The teacher's training time (its data sampling included).</param>
/// <param name="Runs">Every student run.</param>
/// <param name="TotalSeconds">Wall time of the whole experiment.</param>
public sealed record LmTestbedResult(LmTestbedSettings Settings, double OracleTemperature, double OracleEntropy, double UniformKl,
    double TeacherKl, double TeacherSeconds, IReadOnlyList<LmRunResult> Runs, double TotalSeconds)
{
    /// <summary>Mean and sample standard deviation (n − 1; NaN for one value) of the runs of (method, regime) selected by <paramref name="value"/>.</summary>
    public (double Mean, double Std, int Count) Aggregate(LmMethod method, LmRegime regime, Func<LmRunResult, double> value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var xs = Runs.Where(r => r.Method == method && r.Regime == regime).Select(value).ToArray();
        if (xs.Length == 0) return (double.NaN, double.NaN, 0);
        double mean = xs.Average();
        double std = xs.Length < 2 ? double.NaN : Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (xs.Length - 1));
        return (mean, std, xs.Length);
    }

    /// <summary>
    /// The Markdown report: the setup, the reference values (uniform model, teacher), then one row per method with,
    /// per regime, the final KL(oracle ‖ student) and KL(teacher ‖ student) as mean ± std over seeds and the mean
    /// training time per run.
    /// </summary>
    /// <param name="commandLine">The command that produced it (written into the report), or null.</param>
    public string ToMarkdown(string? commandLine = null)
    {
        var s = Settings;
        var sb = new StringBuilder();
        void Line(FormattableString f) => sb.AppendLine(f.ToString(CultureInfo.InvariantCulture));
        Line($"# Language-model distillation testbed (known oracle)");
        sb.AppendLine();
        if (commandLine is not null) { Line($"Command: `{commandLine}`"); sb.AppendLine(); }
        Line($"- Oracle: {s.Oracle.Describe()}, init σ {s.Oracle.InitStd:G3}, τ = {OracleTemperature:G4}, mean entropy {OracleEntropy:F3} nats (ln V = {Math.Log(s.Oracle.VocabSize):F3}).");
        Line($"- Teacher: {s.Teacher.Describe()}, cross-entropy on {s.TeacherSequences} oracle sequences, {s.TeacherSteps} steps, lr {s.TeacherLearningRate:G3} ({TeacherSeconds:F1} s).");
        Line($"- Students: {s.Student.Describe()}, {s.Steps} steps of {s.BatchSize} sequences, lr {s.LearningRate:G3}, AdamW wd {s.WeightDecay:G3}, clip {s.ClipNorm:G3}; offline set {s.OfflineSequences} sequences; {s.Seeds} seed(s).");
        Line($"- Losses: JSD β = {s.Loss.JsdBeta:G3}, skew KL λ = {s.Loss.SkewLambda:G3}, TAID u₀ = {s.Loss.TaidStart:G3} α = {s.Loss.TaidAlpha:G3}, top-k k = {s.Loss.TopK} (rest of the mass: {(s.Loss.TopKRest == TopKRest.Renormalize ? "dropped, renormalized" : "spread uniformly")}); ce = cross-entropy on the sampled tokens (no teacher).");
        if (s.Methods.Contains(LmMethod.MiniLm))
            Line($"- minilm: {s.Loss.MiniLmLogitWeight:G3}·forward KL + {s.Loss.MiniLmWeight:G3}·(L_AT + L_VR) on the last layer (causal); its student has the teacher's {s.Teacher.Heads} heads ({LmTestbed.StudentConfig(s, LmMethod.MiniLm).Describe()}; same parameters and initial values).");
        Line($"- Metric: exact mean KL(oracle ‖ model) over {s.EvalSequences} held-out oracle sequences × {s.Oracle.ContextLength} positions (full distributions, no sampling); KL(teacher ‖ student) on the same positions.");
        Line($"- Total time {TotalSeconds:F0} s; base seed {s.Seed}.");
        sb.AppendLine();
        Line($"| reference | KL(oracle ‖ model) |");
        Line($"|---|---|");
        Line($"| uniform model | {UniformKl:F4} |");
        Line($"| teacher | {TeacherKl:F4} |");
        sb.AppendLine();
        var header = new StringBuilder("| method |");
        var rule = new StringBuilder("|---|");
        foreach (var regime in s.Regimes)
        {
            string n = LmTestbed.Name(regime);
            header.Append(CultureInfo.InvariantCulture, $" {n}: KL(oracle ‖ student) | {n}: KL(teacher ‖ student) | {n}: s/run |");
            rule.Append("---|---|---|");
        }
        sb.AppendLine(header.ToString()).AppendLine(rule.ToString());
        foreach (var method in s.Methods)
        {
            var row = new StringBuilder("| " + LmDistillationLoss.Name(method) + " |");
            foreach (var regime in s.Regimes)
            {
                var golden = Aggregate(method, regime, r => r.KlToOracle);
                var proxy = Aggregate(method, regime, r => r.KlToTeacher);
                var time = Aggregate(method, regime, r => r.Seconds);
                row.Append(CultureInfo.InvariantCulture, $" {PlusMinus(golden)} | {PlusMinus(proxy)} | {time.Mean:F1} |");
            }
            sb.AppendLine(row.ToString());
        }
        sb.AppendLine();
        Line($"Curves (mean over seeds of KL(oracle ‖ student) at each evaluated step):");
        sb.AppendLine();
        var steps = Runs.Count == 0 ? [] : Runs[0].Curve.Select(p => p.Step).ToArray();
        sb.Append("| method | regime |");
        foreach (var st in steps) sb.Append(CultureInfo.InvariantCulture, $" step {st} |");
        sb.AppendLine().Append("|---|---|").Append(string.Concat(Enumerable.Repeat("---|", steps.Length))).AppendLine();
        foreach (var regime in s.Regimes)
            foreach (var method in s.Methods)
            {
                var runs = Runs.Where(r => r.Method == method && r.Regime == regime).ToArray();
                if (runs.Length == 0) continue;
                sb.Append(CultureInfo.InvariantCulture, $"| {LmDistillationLoss.Name(method)} | {LmTestbed.Name(regime)} |");
                for (int i = 0; i < steps.Length; i++)
                    sb.Append(CultureInfo.InvariantCulture, $" {runs.Average(r => r.Curve[i].KlToOracle):F4} |");
                sb.AppendLine();
            }
        return sb.ToString();
    }

    private static string PlusMinus((double Mean, double Std, int Count) a)
        => a.Count == 0 ? "–" : double.IsNaN(a.Std) ? a.Mean.ToString("F4", CultureInfo.InvariantCulture)
            : string.Create(CultureInfo.InvariantCulture, $"{a.Mean:F4} ± {a.Std:F4}");

    /// <summary>
    /// JSON lines: first one object of kind "setup" (settings, oracle τ and entropy, uniform and teacher KL), then one
    /// of kind "run" per student (method, regime, seed, final metrics, seconds, and the curve as a list of
    /// {step, kl_oracle, kl_teacher}).
    /// </summary>
    public string ToJsonLines()
    {
        var sb = new StringBuilder();
        var s = Settings;
        sb.AppendLine(Json(w =>
        {
            w.WriteString("kind", "setup");
            WriteConfig(w, "oracle", s.Oracle);
            WriteConfig(w, "teacher", s.Teacher);
            WriteConfig(w, "student", s.Student);
            Num(w, "oracle_temperature", OracleTemperature);
            Num(w, "oracle_entropy", OracleEntropy);
            Num(w, "uniform_kl", UniformKl);
            Num(w, "teacher_kl", TeacherKl);
            Num(w, "teacher_seconds", TeacherSeconds);
            w.WriteNumber("teacher_steps", s.TeacherSteps);
            w.WriteNumber("teacher_sequences", s.TeacherSequences);
            w.WriteNumber("steps", s.Steps);
            w.WriteNumber("batch_size", s.BatchSize);
            w.WriteNumber("offline_sequences", s.OfflineSequences);
            w.WriteNumber("eval_sequences", s.EvalSequences);
            w.WriteNumber("seeds", s.Seeds);
            Num(w, "lr", s.LearningRate);
            Num(w, "teacher_lr", s.TeacherLearningRate);
            w.WriteNumber("seed", s.Seed);
            Num(w, "total_seconds", TotalSeconds);
        }));
        foreach (var r in Runs)
            sb.AppendLine(Json(w =>
            {
                w.WriteString("kind", "run");
                w.WriteString("method", LmDistillationLoss.Name(r.Method));
                w.WriteString("regime", LmTestbed.Name(r.Regime));
                w.WriteNumber("seed", r.Seed);
                Num(w, "kl_oracle", r.KlToOracle);
                Num(w, "kl_teacher", r.KlToTeacher);
                Num(w, "final_loss", r.FinalLoss);
                Num(w, "seconds", r.Seconds);
                w.WriteStartArray("curve");
                foreach (var p in r.Curve)
                {
                    w.WriteStartObject();
                    w.WriteNumber("step", p.Step);
                    Num(w, "kl_oracle", p.KlToOracle);
                    Num(w, "kl_teacher", p.KlToTeacher);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }));
        return sb.ToString();
    }

    /// <summary>A float64 field; JSON has no NaN or ∞, so those are written as null.</summary>
    private static void Num(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) w.WriteNumber(name, value);
        else w.WriteNull(name);
    }

    private static void WriteConfig(Utf8JsonWriter w, string name, TransformerConfig c)
    {
        w.WriteStartObject(name);
        w.WriteNumber("vocab", c.VocabSize);
        w.WriteNumber("context", c.ContextLength);
        w.WriteNumber("width", c.Width);
        w.WriteNumber("layers", c.Layers);
        w.WriteNumber("heads", c.Heads);
        w.WriteBoolean("tied", c.TiedHead);
        Num(w, "init_std", c.InitStd);
        w.WriteEndObject();
    }

    private static string Json(Action<Utf8JsonWriter> body)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
