using System.Diagnostics;
using System.Globalization;
using Engine.Data;
using Engine.Distillation.Methods;
using Engine.Tensors;
using Engine.Tensors.NN;
using Engine.Tensors.NN.Models;

namespace Engine.Distillation.Experiments;

/// <summary>
/// <c>fmnist-methods</c>: the Fashion-MNIST student (9k parameters) trained by each method with the same
/// budget (epochs, batch, learning-rate schedule, no augmentation) for every seed, from one teacher
/// (1.7M parameters, trained once with seed 0 on random crops, or given). Table: final test accuracy
/// mean ± std over seeds, the gain over scratch, training seconds per epoch and seconds per run;
/// charts: accuracy bars with std error bars and mean test-accuracy curves per epoch.
/// </summary>
public sealed class FmnistMethodsExperiment : IExperiment
{
    /// <summary>The methods run by default, in table order (multi-teacher is appended when <see cref="ExperimentSettings.AdditionalTeachers"/> gives it a second teacher: see <see cref="MethodsFor"/>).</summary>
    public static IReadOnlyList<string> DefaultMethods { get; } = ["scratch", "kd", "dkd", "dist", "fitnets", "at", "rkd", "dml", "pskd"];

    /// <summary>The methods a run with <paramref name="settings"/> trains: the given list, else <see cref="DefaultMethods"/> plus multi-teacher when at least one additional teacher is given.</summary>
    public static IReadOnlyList<string> MethodsFor(ExperimentSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (settings.Methods is { } given) return given;
        return settings.AdditionalTeachers.Count > 0 ? [.. DefaultMethods, "multi-teacher"] : DefaultMethods;
    }

    /// <inheritdoc/>
    public string Name => "fmnist-methods";

    /// <inheritdoc/>
    public string Description => "Fashion-MNIST student by scratch, KD, DKD, DIST, FitNets, AT, RKD, DML, PS-KD (+ multi-teacher with several teachers): accuracy mean ± std over seeds, same budget";

    /// <inheritdoc/>
    public ExperimentReport Run(ExperimentSettings settings, ITrainingObserver observer, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(observer);
        ArgumentNullException.ThrowIfNull(log);
        var methods = MethodsFor(settings);
        // A method may carry options (dkd:beta=1); the table labels each row with the spec as given.
        var specs = new Dictionary<string, (string Method, MethodOptions Options)>();
        foreach (var m in methods)
        {
            if (specs.ContainsKey(m)) throw new ArgumentException($"{Name}: method '{m}' is listed twice.");
            try { specs[m] = MethodOptions.ParseSpec(m); }
            catch (ArgumentException e) { throw new ArgumentException($"{Name}: {e.Message}", e); }
        }
        if (settings.Seeds < 1) throw new ArgumentOutOfRangeException(nameof(settings), $"{Name}: seeds must be at least 1; got {settings.Seeds}.");
        if (settings.Epochs < 1 || settings.TeacherEpochs < 1) throw new ArgumentOutOfRangeException(nameof(settings), $"{Name}: epochs must be at least 1.");

        var (train, test) = LoadData(settings);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Name}: {train.Count} training and {test.Count} test images; methods {string.Join(", ", methods)}; {settings.Seeds} seed(s) × {settings.Epochs} epochs each"));

        bool needTeacher = methods.Any(m => MethodRegistry.Find(specs[m].Method)!.Teacher == TeacherRequirement.Required);
        Module? teacher = settings.Teacher;
        bool ownTeacher = false;
        double teacherAcc = double.NaN, teacherSeconds = 0;
        string teacherNote = "given";
        if (needTeacher && teacher is null)
        {
            teacher = FashionMnistModels.Teacher(new Generator(0));
            ownTeacher = true;
            using var ce = new CrossEntropyMethod(teacher);
            var r = MethodTrainer.Train(ce, settings.Training with { Epochs = settings.TeacherEpochs, Seed = 0, Augment = true }, train, test, observer, "teacher");
            teacherAcc = r.TestAccuracy;
            teacherSeconds = r.Seconds;
            teacherNote = string.Create(CultureInfo.InvariantCulture, $"trained here: {settings.TeacherEpochs} epochs on random crops, seed 0, {r.Seconds:F0} s");
            settings.SaveTeacher?.Invoke(teacher);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"teacher: test accuracy {teacherAcc * 100:F2}% ({teacherSeconds:F1} s)"));
        }
        else if (teacher is not null) teacherAcc = MethodTrainer.Evaluate(teacher, test, settings.Training.Normalization, settings.Training.EvalBatchSize);

        var results = methods.ToDictionary(m => m, _ => new List<MethodRunResult>());
        try
        {
            int total = methods.Count * settings.Seeds, done = 0;
            for (int seed = 0; seed < settings.Seeds; seed++)
                foreach (var name in methods)
                {
                    using var student = FashionMnistModels.Student(new Generator((ulong)seed));
                    var context = new MethodContext(student, teacher, s => FashionMnistModels.Student(new Generator(s)), [1, FashionMnist.ImageSize, FashionMnist.ImageSize],
                        (ulong)seed, specs[name].Options) { AdditionalTeachers = settings.AdditionalTeachers };
                    using var method = MethodRegistry.Create(specs[name].Method, context);
                    string label = $"[{done + 1}/{total}] {name} seed {seed}";
                    var r = MethodTrainer.Train(method, settings.Training with { Epochs = settings.Epochs, Seed = (ulong)seed, Augment = false }, train, test, observer, label);
                    results[name].Add(r);
                    done++;
                    log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{label}: test accuracy {r.TestAccuracy * 100:F2}%, {r.SecondsPerEpoch:F1} s/epoch, {r.Seconds:F1} s in all"));
                }
        }
        finally
        {
            if (ownTeacher) teacher!.Dispose();
        }
        return Report(settings, methods, results, train.Count, test.Count, teacherAcc, teacherNote);
    }

    /// <summary>Loads the training and test splits, cut to the limits.</summary>
    public static (ImageDataset Train, ImageDataset Test) LoadData(ExperimentSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var train = FashionMnist.Load(FashionMnist.Split.Train, settings.DataDirectory);
        var test = FashionMnist.Load(FashionMnist.Split.Test, settings.DataDirectory);
        if (settings.Limit is int n && n < train.Count) train = train.Take(n);
        if (settings.TestLimit is int m && m < test.Count) test = test.Take(m);
        return (train, test);
    }

    private ExperimentReport Report(ExperimentSettings settings, IReadOnlyList<string> methods, Dictionary<string, List<MethodRunResult>> results,
        int trainCount, int testCount, double teacherAcc, string teacherNote)
    {
        var report = new ExperimentReport(Name, $"Fashion-MNIST student (9k parameters): distillation methods, same budget");
        report.Columns.AddRange(["method", "test accuracy (%)", "vs scratch (points)", "train s/epoch", "s/run"]);
        if (!double.IsNaN(teacherAcc))
            report.Rows.Add(["teacher (1.7M parameters)", (teacherAcc * 100).ToString("F2", CultureInfo.InvariantCulture), "", "", ""]);
        double? scratch = results.TryGetValue("scratch", out var sr) ? sr.Average(r => r.TestAccuracy) : null;
        foreach (var m in methods)
        {
            var accs = results[m].Select(r => r.TestAccuracy).ToList();
            double mean = accs.Average();
            string delta = scratch is double s && m != "scratch" ? ((mean - s) * 100).ToString("+0.00;-0.00", CultureInfo.InvariantCulture) : "";
            report.Rows.Add([m, ExperimentReport.MeanStd(accs), delta,
                results[m].Average(r => r.SecondsPerEpoch).ToString("F1", CultureInfo.InvariantCulture),
                results[m].Average(r => r.Seconds).ToString("F1", CultureInfo.InvariantCulture)]);
            foreach (var (r, seed) in results[m].Select((r, i) => (r, i)))
                report.Records.Add(new Dictionary<string, object>
                {
                    ["method"] = m, ["seed"] = seed, ["test_acc"] = r.TestAccuracy, ["seconds"] = r.Seconds, ["seconds_per_epoch"] = r.SecondsPerEpoch,
                    ["test_acc_per_epoch"] = r.Epochs.Select(e => e.TestAccuracy).ToArray(), ["train_loss_per_epoch"] = r.Epochs.Select(e => e.TrainLoss).ToArray(),
                });
        }
        var t = settings.Training;
        report.Notes.Add(string.Create(CultureInfo.InvariantCulture,
            $"{trainCount} training images, {testCount} test images; every student: {settings.Epochs} epochs, batch {t.BatchSize}, SGD lr {t.LearningRate} (warmup {t.WarmupEpochs} epoch, cosine to 0), momentum {t.Momentum}, weight decay {t.WeightDecay}, no augmentation; mean ± std over {settings.Seeds} seed(s) (sample std)."));
        report.Notes.Add($"Teacher: {teacherNote}. Hyperparameters: each method's defaults (mdistiller's): KD T = 4, α = 0.9; DKD CE + (α = 1, β = 8, T = 4), warm-up over the first 1/12 of the run (mdistiller's 20 of 240 epochs); DIST CE + β = γ = τ = 1; multi-teacher KL to the mean of the teachers' probabilities (T = 1, no labels); FitNets w = 100 (student block1 → 1×1 conv → teacher block2); AT w = 1000, p = 2 (block1↔block2, block2↔block3); RKD 25/50 on the embeddings; DML 2 peers; PS-KD α_T = 0.8.");
        report.Notes.Add("train s/epoch: wall time of the training steps, evaluation excluded (KD computes the teacher's logits once before epoch 1, outside it; FitNets/AT/RKD run the teacher in epoch 1 and reuse its cached features afterwards, inside it); s/run: everything. The machine's cores may have been shared.");
        report.Charts.Add(("accuracy.svg", SvgChart.Bars("Fashion-MNIST student: test accuracy (mean ± std over seeds)", "test accuracy (%)",
            methods.Select(m =>
            {
                var (mean, std) = ExperimentReport.Stats(results[m].Select(r => r.TestAccuracy * 100).ToList());
                return new BarValue(m, mean, std);
            }).ToList())));
        report.Charts.Add(("curves.svg", SvgChart.Lines("Test accuracy per epoch (mean over seeds)", "epoch", "test accuracy (%)",
            methods.Select(m => new LineSeries(m, Enumerable.Range(0, settings.Epochs)
                .Select(e => ((double)(e + 1), results[m].Average(r => r.Epochs[e].TestAccuracy) * 100)).ToList())).ToList())));
        return report;
    }
}
