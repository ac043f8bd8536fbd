using System.Globalization;
using Engine.Data;
using Engine.Distillation.Methods;
using Engine.Tensors;
using Engine.Tensors.NN.Models;

namespace Engine.Distillation.Experiments;

/// <summary>
/// <c>defensive</c>: defensive distillation (Papernot et al. 2016) of the Fashion-MNIST student, per seed:
/// (1) a student trained normally (T = 1); (2) the initial network, same architecture, trained at
/// temperature T; (3) the distilled network trained at T on (2)'s soft labels; (1) and (3) evaluated at
/// T = 1 on clean test images and under FGSM and PGD (L∞, ε in pixel units). Known result to compare
/// with (Carlini and Wagner 2016): the distilled network's near-one-hot softmax at T = 1 hides the
/// gradient, so gradient attacks that use the softmax cross-entropy lose power (gradient masking),
/// not a true robustness gain.
/// </summary>
public sealed class DefensiveExperiment : IExperiment
{
    /// <summary>Distillation temperature.</summary>
    public double Temperature { get; init; } = 20;

    /// <summary>L∞ radius in pixel units ([0, 1] images).</summary>
    public double Epsilon { get; init; } = 0.1;

    /// <summary>PGD steps (step size ε/4, random start).</summary>
    public int PgdSteps { get; init; } = 10;

    /// <inheritdoc/>
    public string Name => "defensive";

    /// <inheritdoc/>
    public string Description => "defensive distillation of the Fashion-MNIST student: clean, FGSM and PGD accuracy vs a normally trained student";

    /// <inheritdoc/>
    public ExperimentReport Run(ExperimentSettings settings, ITrainingObserver observer, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(observer);
        ArgumentNullException.ThrowIfNull(log);
        if (settings.Seeds < 1) throw new ArgumentOutOfRangeException(nameof(settings), $"{Name}: seeds must be at least 1; got {settings.Seeds}.");
        var (train, test) = FmnistMethodsExperiment.LoadData(settings);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Name}: {train.Count} training and {test.Count} test images; T = {Temperature}, ε = {Epsilon}, PGD {PgdSteps} steps; {settings.Seeds} seed(s) × 3 runs of {settings.Epochs} epochs"));
        var plain = new List<RobustnessResult>();
        var distilled = new List<RobustnessResult>();
        var ts = settings.Training with { Epochs = settings.Epochs, Augment = false };
        for (int seed = 0; seed < settings.Seeds; seed++)
        {
            var s = ts with { Seed = (ulong)seed };
            using var normal = FashionMnistModels.Student(new Generator((ulong)seed));
            using (var m = new CrossEntropyMethod(normal)) MethodTrainer.Train(m, s, train, test, observer, $"seed {seed}: student T=1");
            using var initial = FashionMnistModels.Student(new Generator((ulong)seed + 100));
            using (var m = new CrossEntropyMethod(initial, Temperature, "initial")) MethodTrainer.Train(m, s, train, test, observer, $"seed {seed}: initial network T={Temperature}");
            using var student = FashionMnistModels.Student(new Generator((ulong)seed + 200));
            using (var m = new DefensiveDistillationMethod(student, initial, Temperature)) MethodTrainer.Train(m, s, train, test, observer, $"seed {seed}: distilled network T={Temperature}");
            var a = Robustness.Evaluate(normal, test, Epsilon, PgdSteps, Epsilon / 4, FashionMnist.Mean, FashionMnist.Std, seed: (ulong)seed);
            var b = Robustness.Evaluate(student, test, Epsilon, PgdSteps, Epsilon / 4, FashionMnist.Mean, FashionMnist.Std, seed: (ulong)seed);
            plain.Add(a);
            distilled.Add(b);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"seed {seed}: normal clean {a.Clean * 100:F2}% FGSM {a.Fgsm * 100:F2}% PGD {a.Pgd * 100:F2}%; distilled clean {b.Clean * 100:F2}% FGSM {b.Fgsm * 100:F2}% PGD {b.Pgd * 100:F2}%"));
        }
        var report = new ExperimentReport(Name, "Defensive distillation of the Fashion-MNIST student: accuracy under FGSM and PGD");
        report.Columns.AddRange(["model", "clean (%)", $"FGSM ε={Epsilon.ToString(CultureInfo.InvariantCulture)} (%)", $"PGD-{PgdSteps} ε={Epsilon.ToString(CultureInfo.InvariantCulture)} (%)"]);
        foreach (var (label, rs) in new[] { ("student, T = 1", plain), ($"defensively distilled, T = {Temperature.ToString(CultureInfo.InvariantCulture)}", distilled) })
        {
            report.Rows.Add([label, ExperimentReport.MeanStd(rs.Select(r => r.Clean).ToList()), ExperimentReport.MeanStd(rs.Select(r => r.Fgsm).ToList()), ExperimentReport.MeanStd(rs.Select(r => r.Pgd).ToList())]);
            foreach (var (r, seed) in rs.Select((r, i) => (r, i)))
                report.Records.Add(new Dictionary<string, object> { ["model"] = label, ["seed"] = seed, ["clean"] = r.Clean, ["fgsm"] = r.Fgsm, ["pgd"] = r.Pgd, ["images"] = r.Images });
        }
        report.Notes.Add(string.Create(CultureInfo.InvariantCulture,
            $"{train.Count} training / {test.Count} test images; each network {settings.Epochs} epochs (same schedule); attacks on the softmax cross-entropy at T = 1, ε in pixel units of [0, 1] images, PGD step ε/4 with a random start; mean ± std over {settings.Seeds} seed(s)."));
        report.Notes.Add("Higher attacked accuracy of the distilled network is expected from gradient masking (its T = 1 softmax saturates), not from true robustness (Carlini and Wagner 2016).");
        var bars = new List<BarValue>();
        foreach (var (label, rs) in new[] { ("T=1", plain), ("distilled", distilled) })
            foreach (var (kind, f) in new (string, Func<RobustnessResult, double>)[] { ("clean", r => r.Clean), ("FGSM", r => r.Fgsm), ("PGD", r => r.Pgd) })
            {
                var (mean, std) = ExperimentReport.Stats(rs.Select(r => f(r) * 100).ToList());
                bars.Add(new BarValue($"{label} {kind}", mean, std));
            }
        report.Charts.Add(("robustness.svg", SvgChart.Bars("Accuracy clean and under attack (mean ± std over seeds)", "accuracy (%)", bars)));
        return report;
    }
}
