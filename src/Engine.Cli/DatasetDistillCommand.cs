using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Engine.Cli.Training;
using Engine.Data;
using Engine.Distillation.DatasetDistillation;
using Engine.Tensors;
using Engine.Tensors.Cpu;

namespace Engine.Cli;

/// <summary>
/// <c>engine dataset-distill --method dm|dc|mtt --ipc K ...</c>: distills Fashion-MNIST into K learnable
/// images per class (distribution matching, gradient matching or trajectory matching), then trains fresh
/// ConvNets on the synthetic set and on random real subsets of the same size and reports both test
/// accuracies (mean ± std over seeds). Writes <c>synthetic.png</c> (one row per class), <c>init.png</c>
/// (the starting images), <c>synthetic.safetensors</c> and <c>result.md</c> (a Markdown table row) to
/// <c>--out</c>.
/// </summary>
public static class DatasetDistillCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var method = new Option<string>("--method") { Description = "dm (distribution matching), dc (gradient matching) or mtt (trajectory matching).", Required = true };
        method.AcceptOnlyFromAmong("dm", "dc", "mtt");
        var ipc = new Option<int>("--ipc") { Description = "Synthetic images per class.", DefaultValueFactory = _ => 1 };
        var iterations = new Option<int?>("--iterations") { Description = "Outer iterations (default: dm 200, dc 100 for ipc 1 and 20 otherwise (each runs 5 matching steps), mtt 100)." };
        var seed = new Option<ulong>("--seed") { Description = "Seeds the initial images, the sampled networks, the batches and the experts.", DefaultValueFactory = _ => 0UL };
        var outDir = new Option<string?>("--out") { Description = "Output directory (default runs/dataset-distill/METHOD-ipcK)." };
        var data = new Option<string?>("--data") { Description = $"Directory of the Fashion-MNIST IDX files (default {FashionMnist.DefaultDirectory})." };
        var limit = new Option<int?>("--limit") { Description = "Use the first N training images only." };
        var testLimit = new Option<int?>("--test-limit") { Description = "Evaluate on the first N test images only." };
        var init = new Option<string>("--init") { Description = "real (random real images of each class) or noise.", DefaultValueFactory = _ => "real" };
        init.AcceptOnlyFromAmong("real", "noise");
        var width = new Option<int>("--width") { Description = "Channels of the ConvNet's conv layers.", DefaultValueFactory = _ => 32 };
        var depth = new Option<int>("--depth") { Description = "Conv blocks of the ConvNet.", DefaultValueFactory = _ => 2 };
        var norm = new Option<string>("--norm") { Description = "instance or none (normalization after each conv).", DefaultValueFactory = _ => "instance" };
        norm.AcceptOnlyFromAmong("instance", "none");
        var realBatch = new Option<int>("--real-batch") { Description = "Real images per class per matching step (dm, dc).", DefaultValueFactory = _ => 128 };
        var lrImg = new Option<double?>("--lr-img") { Description = "SGD learning rate of the images (default: dm 1, dc 0.1, mtt 100)." };
        var outerLoop = new Option<int?>("--outer-loop") { Description = "dc: matching steps per sampled network (default 1 for ipc 1, 5 otherwise)." };
        var innerLoop = new Option<int?>("--inner-loop") { Description = "dc: network steps on the synthetic set between matching steps (default 1 for ipc 1, 5 otherwise)." };
        var experts = new Option<int>("--experts") { Description = "mtt: expert trajectories trained on the real images.", DefaultValueFactory = _ => 2 };
        var expertLr = new Option<double>("--expert-lr") { Description = "mtt: SGD learning rate of the experts (and the initial synthetic learning rate).", DefaultValueFactory = _ => 0.01 };
        var synSteps = new Option<int>("--syn-steps") { Description = "mtt: unrolled SGD steps on the synthetic set.", DefaultValueFactory = _ => 10 };
        var expertEpochs = new Option<int>("--expert-epochs") { Description = "mtt: expert epochs between start and target.", DefaultValueFactory = _ => 2 };
        var maxStart = new Option<int>("--max-start-epoch") { Description = "mtt: latest start epoch.", DefaultValueFactory = _ => 2 };
        var expertImages = new Option<int>("--expert-images") { Description = "mtt: the experts train on this many random real images (class-balanced; 0: all), so expert epochs stay short.", DefaultValueFactory = _ => 10000 };
        var lrLr = new Option<double>("--lr-lr") { Description = "mtt: learning rate of the synthetic learning rate (0: fixed).", DefaultValueFactory = _ => 1e-5 };
        var evalEpochs = new Option<int>("--eval-epochs") { Description = "Epochs of each evaluation training (on the synthetic set and on the random real subset).", DefaultValueFactory = _ => 300 };
        var evalSeeds = new Option<int>("--eval-seeds") { Description = "Evaluation trainings per set; the table shows mean ± std.", DefaultValueFactory = _ => 3 };
        var threads = new Option<int?>("--threads") { Description = "Threads for the CPU ops (default: all processors)." };
        var logEvery = new Option<int>("--log-every") { Description = "Print the objective every N iterations.", DefaultValueFactory = _ => 10 };
        var command = new Command("dataset-distill", "Distill Fashion-MNIST into a few synthetic images per class (DM, DC or MTT) and compare with random real images.")
        {
            method, ipc, iterations, seed, outDir, data, limit, testLimit, init, width, depth, norm, realBatch, lrImg, outerLoop, innerLoop,
            experts, expertLr, synSteps, expertEpochs, maxStart, expertImages, lrLr, evalEpochs, evalSeeds, threads, logEvery,
        };
        command.SetAction(r =>
        {
            var output = r.InvocationConfiguration.Output;
            var error = r.InvocationConfiguration.Error;
            try
            {
                string m = r.GetValue(method)!;
                int k = r.GetValue(ipc);
                var s = new Settings(m, k, r.GetValue(iterations) ?? DefaultIterations(m, k), r.GetValue(seed),
                    r.GetValue(outDir) ?? Path.Combine("runs", "dataset-distill", $"{m}-ipc{k}"),
                    r.GetValue(data), r.GetValue(limit), r.GetValue(testLimit), r.GetValue(init) == "noise" ? SyntheticInit.Noise : SyntheticInit.Real,
                    new ConvNetSpec(Width: r.GetValue(width), Depth: r.GetValue(depth), Norm: r.GetValue(norm) == "none" ? ConvNetNorm.None : ConvNetNorm.Instance),
                    r.GetValue(realBatch), r.GetValue(lrImg), r.GetValue(outerLoop) ?? (k == 1 ? 1 : 5), r.GetValue(innerLoop) ?? (k == 1 ? 1 : 5),
                    r.GetValue(experts), r.GetValue(expertLr), r.GetValue(synSteps), r.GetValue(expertEpochs), r.GetValue(maxStart), r.GetValue(expertImages), r.GetValue(lrLr),
                    r.GetValue(evalEpochs), r.GetValue(evalSeeds), r.GetValue(threads), Math.Max(1, r.GetValue(logEvery)),
                    "engine " + string.Join(' ', r.Tokens.Select(t => t.Value)));
                return Run(s, output);
            }
            catch (Exception e) when (e is CliException or DatasetNotFoundException or DataFormatException or IOException or UnauthorizedAccessException or ArgumentException)
            {
                error.WriteLine($"engine dataset-distill: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    /// <summary>
    /// Default outer iterations of <paramref name="method"/> at <paramref name="ipc"/> images per class,
    /// chosen for runs of minutes on 2 CPU cores (gradient matching above 1 image per class runs 5
    /// matching steps per iteration, hence fewer iterations).
    /// </summary>
    public static int DefaultIterations(string method, int ipc) => method switch { "dm" => 200, "dc" => ipc == 1 ? 100 : 20, _ => 100 };

    /// <summary>Everything the command reads from its options.</summary>
    private sealed record Settings(string Method, int Ipc, int Iterations, ulong Seed, string Out, string? Data, int? Limit, int? TestLimit,
        SyntheticInit Init, ConvNetSpec Spec, int RealBatch, double? ImageLr, int OuterLoop, int InnerLoop,
        int Experts, double ExpertLr, int SynSteps, int ExpertEpochs, int MaxStartEpoch, int ExpertImages, double LrLr,
        int EvalEpochs, int EvalSeeds, int? Threads, int LogEvery, string CommandLine);

    private static int Run(Settings s, TextWriter output)
    {
        if (s.Ipc < 1) throw new CliException($"--ipc {s.Ipc}: expected at least 1.");
        if (s.Iterations < 0) throw new CliException($"--iterations {s.Iterations}: expected at least 0.");
        if (s.EvalEpochs < 1 || s.EvalSeeds < 1) throw new CliException($"--eval-epochs {s.EvalEpochs} and --eval-seeds {s.EvalSeeds}: expected at least 1.");
        if (s.Limit is < 1 || s.TestLimit is < 1) throw new CliException("--limit and --test-limit: expected at least 1 image.");
        if (s.Threads is int t)
        {
            if (t < 1) throw new CliException($"--threads {t}: expected at least 1.");
            Parallelism.MaxThreads = t;
        }
        s.Spec.Validate();
        var total = Stopwatch.StartNew();
        var train = FashionMnist.Load(FashionMnist.Split.Train, s.Data);
        var test = FashionMnist.Load(FashionMnist.Split.Test, s.Data);
        if (s.Limit is int n && n < train.Count) train = train.Take(n);
        if (s.TestLimit is int nt && nt < test.Count) test = test.Take(nt);
        Directory.CreateDirectory(s.Out);
        output.WriteLine($"dataset-distill: {s.Method}, {s.Ipc} image(s) per class, {s.Iterations} iterations, init {s.Init.ToString().ToLowerInvariant()}, " +
                         $"ConvNet width {s.Spec.Width} depth {s.Spec.Depth} norm {s.Spec.Norm.ToString().ToLowerInvariant()}; {train.Count} training images, {test.Count} test images; seed {s.Seed}");

        using var real = new ClassImages(Normalized(train), ToLongs(train.Labels), train.NumClasses);
        using var testImages = Normalized(test);
        var testLabels = ToLongs(test.Labels);
        var rng = new Random(unchecked((int)s.Seed) ^ 0x2545F491);
        using var syn = s.Init == SyntheticInit.Real
            ? SyntheticSet.FromReal(real, s.Ipc, rng, s.ExpertLr)
            : SyntheticSet.FromNoise(real.Classes, s.Ipc, [1, FashionMnist.ImageSize, FashionMnist.ImageSize], new Generator(s.Seed), learningRate: s.ExpertLr);
        SaveGrid(Path.Combine(s.Out, "init.png"), syn);

        var experts = new List<ExpertTrajectory>();
        double expertSeconds = 0;
        try
        {
            if (s.Method == "mtt")
            {
                var clock = Stopwatch.StartNew();
                int epochs = s.MaxStartEpoch + s.ExpertEpochs;
                if (s.Experts < 1 || s.ExpertImages < 0) throw new CliException($"--experts {s.Experts} and --expert-images {s.ExpertImages}: expected ≥ 1 and ≥ 0.");
                using var expertData = ExpertSubset(real, s.ExpertImages, new Random(unchecked((int)s.Seed) ^ 0x6A09E667));
                for (int e = 0; e < s.Experts; e++)
                    experts.Add(ExpertTrajectory.Train(s.Spec, expertData, epochs, s.ExpertLr, 256, s.Seed * 1000 + (ulong)e, output.WriteLine));
                expertSeconds = clock.Elapsed.TotalSeconds;
                output.WriteLine(Inv($"experts: {s.Experts} × {epochs} epochs over {expertData.Count} images in {expertSeconds:F1} s"));
            }
            using IDatasetDistillationMethod distiller = s.Method switch
            {
                "dm" => new DistributionMatching(s.Spec, real, syn, new DistributionMatchingOptions(s.RealBatch, s.ImageLr ?? 1.0), s.Seed),
                "dc" => new GradientMatching(s.Spec, real, syn, new GradientMatchingOptions(s.RealBatch, s.ImageLr ?? 0.1, OuterLoop: s.OuterLoop, InnerLoop: s.InnerLoop), s.Seed),
                _ => new TrajectoryMatching(s.Spec, real, syn, experts,
                    new TrajectoryMatchingOptions(s.SynSteps, s.ExpertEpochs, s.MaxStartEpoch, ImageLearningRate: s.ImageLr ?? 100, LearningRateLearningRate: s.LrLr), s.Seed),
            };
            var distillClock = Stopwatch.StartNew();
            double window = 0;
            int inWindow = 0;
            for (int it = 0; it < s.Iterations; it++)
            {
                double obj = distiller.Step(it);
                if (!double.IsFinite(obj)) throw new CliException($"iteration {it}: the objective is {obj}; try a smaller --lr-img.");
                window += obj;
                inWindow++;
                if ((it + 1) % s.LogEvery == 0 || it == s.Iterations - 1)
                {
                    string lr = s.Method == "mtt" ? Inv($", synthetic lr {syn.LearningRate.ToDouble():G4}") : "";
                    output.WriteLine(Inv($"iteration {it + 1}/{s.Iterations}: objective {window / inWindow:G5} (mean of the last {inWindow}){lr}, {distillClock.Elapsed.TotalSeconds / (it + 1):F2} s/iteration"));
                    window = 0;
                    inWindow = 0;
                }
            }
            double distillSeconds = distillClock.Elapsed.TotalSeconds;

            SaveGrid(Path.Combine(s.Out, "synthetic.png"), syn);
            syn.Save(Path.Combine(s.Out, "synthetic.safetensors"), new Dictionary<string, string>
            {
                ["method"] = s.Method, ["iterations"] = s.Iterations.ToString(CultureInfo.InvariantCulture), ["seed"] = s.Seed.ToString(CultureInfo.InvariantCulture),
                ["normalization"] = Inv($"images are (pixel - {FashionMnist.Mean}) / {FashionMnist.Std}, pixel in [0, 1]"),
                ["convnet"] = s.Spec.ToString(), ["command"] = s.CommandLine,
            });

            // Evaluation: fresh networks trained on the synthetic set, and on random real subsets of the same size.
            var evalClock = Stopwatch.StartNew();
            double lrEval = s.Method == "mtt" ? syn.LearningRate.ToDouble() : 0.01;
            if (!(lrEval > 0)) lrEval = 0.01;
            var options = new EvaluationOptions(s.EvalEpochs, LearningRate: lrEval);
            var realOptions = new EvaluationOptions(s.EvalEpochs);
            var synAcc = new List<double>();
            var realAcc = new List<double>();
            for (int e = 0; e < s.EvalSeeds; e++)
            {
                ulong evalSeed = 10_000 + s.Seed * 100 + (ulong)e;
                synAcc.Add(SetEvaluation.TrainAndTest(s.Spec, syn.Images, syn.Labels, testImages, testLabels, options, evalSeed));
                var (ri, rl) = SetEvaluation.RandomRealSubset(real, s.Ipc, new Random((int)evalSeed));
                using (ri)
                using (rl)
                    realAcc.Add(SetEvaluation.TrainAndTest(s.Spec, ri, rl, testImages, testLabels, realOptions, evalSeed));
                output.WriteLine(Inv($"evaluation {e + 1}/{s.EvalSeeds}: synthetic {synAcc[^1] * 100:F2}%, random real {realAcc[^1] * 100:F2}%"));
            }
            double evalSeconds = evalClock.Elapsed.TotalSeconds;

            string header = "| method | IPC | iterations | init | synthetic set: test acc. | random real subset: test acc. | distill time | command |\n|---|---|---|---|---|---|---|---|";
            string time = s.Method == "mtt" ? Inv($"{distillSeconds:F0} s (+{expertSeconds:F0} s experts)") : Inv($"{distillSeconds:F0} s");
            string row = $"| {s.Method.ToUpperInvariant()} | {s.Ipc} | {s.Iterations} | {s.Init.ToString().ToLowerInvariant()} | {MeanStd(synAcc)} | {MeanStd(realAcc)} | {time} | `{s.CommandLine}` |";
            File.WriteAllText(Path.Combine(s.Out, "result.md"), header + "\n" + row + "\n", Encoding.UTF8);
            output.WriteLine(header);
            output.WriteLine(row);
            output.WriteLine(Inv($"wrote {s.Out}/synthetic.png, synthetic.safetensors, result.md; total {total.Elapsed.TotalSeconds:F0} s (evaluation {evalSeconds:F0} s, {s.EvalSeeds} seed(s) × {s.EvalEpochs} epochs, {test.Count} test images)"));
            return 0;
        }
        finally
        {
            foreach (var e in experts) e.Dispose();
        }
    }

    /// <summary>All images of <paramref name="set"/> as float32, normalized with Fashion-MNIST's mean and std.</summary>
    private static Tensor Normalized(ImageDataset set)
    {
        using var x = set.ImagesTensor();
        using (Tensor.NoGrad())
        using (var centered = x.Sub(FashionMnist.Mean))
            return centered.Div(FashionMnist.Std);
    }

    /// <summary>
    /// A class-balanced random subset of about <paramref name="count"/> images of <paramref name="real"/>
    /// (⌊count / classes⌋ per class, fewer where a class has fewer); all of them when count is 0 or larger.
    /// </summary>
    private static ClassImages ExpertSubset(ClassImages real, int count, Random rng)
    {
        var idx = new List<long>();
        var labels = new List<long>();
        int per = count == 0 || count >= real.Count ? int.MaxValue : Math.Max(1, count / real.Classes);
        for (int c = 0; c < real.Classes; c++)
        {
            var pick = real.SampleIndices(c, per, rng);
            idx.AddRange(pick);
            labels.AddRange(Enumerable.Repeat((long)c, pick.Length));
        }
        Tensor images;
        using (Tensor.NoGrad()) images = real.Gather([.. idx]);
        return new ClassImages(images, labels, real.Classes);
    }

    private static long[] ToLongs(ReadOnlySpan<byte> labels)
    {
        var r = new long[labels.Length];
        for (int i = 0; i < r.Length; i++) r[i] = labels[i];
        return r;
    }

    /// <summary>The synthetic images back in pixel space (clamped to [0, 1]), one row per class, as a PNG.</summary>
    private static void SaveGrid(string path, SyntheticSet syn)
    {
        float[] pixels;
        using (Tensor.NoGrad())
        using (var x = syn.Images.Detach())
        using (var scaled = x.Mul(FashionMnist.Std))
        using (var shifted = scaled.Add(FashionMnist.Mean))
        using (var f = shifted.To(DType.Float32))
            pixels = f.ToArray<float>();
        Png.SaveGrid(path, pixels, syn.Count, 1, FashionMnist.ImageSize, FashionMnist.ImageSize, columns: syn.ImagesPerClass);
    }

    private static string MeanStd(IReadOnlyList<double> xs)
    {
        double mean = xs.Average();
        double std = xs.Count < 2 ? 0 : Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (xs.Count - 1));
        return Inv($"{mean * 100:F2} ± {std * 100:F2}%");
    }

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
