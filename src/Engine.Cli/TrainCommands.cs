using System.CommandLine;
using System.Globalization;
using Engine.Cli.Training;
using Engine.Data;
using Engine.Tensors.NN.Models;
using Spectre.Console;

namespace Engine.Cli;

/// <summary>
/// <c>engine train</c>, <c>engine distill</c>, <c>engine eval</c> and <c>engine main-job</c>: training,
/// distilling and evaluating the Fashion-MNIST teacher and student.
/// </summary>
public static class TrainCommands
{
    private sealed class Common
    {
        public readonly Option<int?> Epochs = new("--epochs") { Description = "Epochs (passes over the training images)." };
        public readonly Option<int> BatchSize = new("--batch-size") { Description = "Images per step.", DefaultValueFactory = _ => 128 };
        public readonly Option<double> Lr = new("--lr") { Description = "Peak learning rate of SGD (momentum 0.9, weight decay 5e-4), annealed per step by a cosine schedule to 0.", DefaultValueFactory = _ => 0.05 };
        public readonly Option<double> Warmup = new("--warmup-epochs") { Description = "Epochs of linear warmup from 0.1x the peak rate (capped at a fifth of the run; 0: none).", DefaultValueFactory = _ => 1.0 };
        public readonly Option<double> WeightDecay = new("--weight-decay") { Description = "L2 weight decay.", DefaultValueFactory = _ => 5e-4 };
        public readonly Option<ulong> Seed = new("--seed") { Description = "Seeds the initialization, dropout, shuffling and augmentation.", DefaultValueFactory = _ => 0UL };
        public readonly Option<int?> Threads = new("--threads") { Description = "Threads for the CPU ops (default: all processors)." };
        public readonly Option<string> Device = new("--device") { Description = "Device to train on: cpu, emulator, opencl[:N] or cuda[:N].", DefaultValueFactory = _ => "cpu" };
        public readonly Option<string?> Data = new("--data") { Description = $"Directory of the Fashion-MNIST IDX files (default {FashionMnist.DefaultDirectory})." };
        public readonly Option<int?> Limit = new("--limit") { Description = "Train on the first N training images only (quick runs)." };
        public readonly Option<int?> TestLimit = new("--test-limit") { Description = "Evaluate on the first N test images only (quick runs)." };
        public readonly Option<bool?> Augment = new("--augment") { Description = "Random 28x28 crops of images padded by 2 (default: on for the teacher, off for students)." };
        public readonly Option<bool> Flip = new("--flip") { Description = "Also flip images horizontally at random." };
        public readonly Option<string?> Out = new("--out") { Description = "Write the trained model to this safetensors checkpoint." };
        public readonly Option<string?> Metrics = new("--metrics") { Description = "Append one JSON line per epoch to this file." };

        public void AddTo(Command c)
        {
            foreach (var o in new Option[] { Epochs, BatchSize, Lr, Warmup, WeightDecay, Seed, Threads, Device, Data, Limit, TestLimit, Augment, Flip, Out, Metrics })
                c.Options.Add(o);
        }

        public TrainSettings Read(ParseResult r, int defaultEpochs) => new()
        {
            Epochs = r.GetValue(Epochs) ?? defaultEpochs,
            BatchSize = r.GetValue(BatchSize),
            LearningRate = r.GetValue(Lr),
            WarmupEpochs = r.GetValue(Warmup),
            WeightDecay = r.GetValue(WeightDecay),
            Seed = r.GetValue(Seed),
            Threads = r.GetValue(Threads),
            Device = r.GetValue(Device) ?? "cpu",
            DataDirectory = r.GetValue(Data),
            Limit = r.GetValue(Limit),
            TestLimit = r.GetValue(TestLimit),
            Augment = r.GetValue(Augment),
            Flip = r.GetValue(Flip),
            Out = r.GetValue(Out),
            Metrics = r.GetValue(Metrics),
        };
    }

    /// <summary>Default epochs of <c>train --model teacher</c> (reaches about 92-93% test accuracy; see the README).</summary>
    public const int DefaultTeacherEpochs = 15;

    /// <summary>Default epochs of <c>train --model student</c> and <c>distill</c>.</summary>
    public const int DefaultStudentEpochs = 10;

    /// <summary>Adds train, distill, eval, main-job and experiment to <paramref name="root"/>.</summary>
    public static void AddTo(RootCommand root, Func<TextWriter, TextWriter, CliConsole> consoleFactory)
    {
        root.Subcommands.Add(Train(consoleFactory));
        root.Subcommands.Add(Distill(consoleFactory));
        root.Subcommands.Add(Eval(consoleFactory));
        root.Subcommands.Add(MainJob(consoleFactory));
        root.Subcommands.Add(ExperimentCommand.Create(consoleFactory));
    }

    private static int Guard(string name, CliConsole console, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is CliException or DatasetNotFoundException or DataFormatException or IOException or UnauthorizedAccessException)
        {
            console.Error.WriteLine($"engine {name}: {e.Message}");
            return 1;
        }
    }

    private static CliConsole ConsoleOf(ParseResult r, Func<TextWriter, TextWriter, CliConsole> factory)
        => factory(r.InvocationConfiguration.Output, r.InvocationConfiguration.Error);

    private static Command Train(Func<TextWriter, TextWriter, CliConsole> factory)
    {
        var common = new Common();
        var model = new Option<string>("--model") { Description = "teacher or student.", Required = true };
        model.AcceptOnlyFromAmong("teacher", "student");
        var command = new Command("train", "Train the Fashion-MNIST teacher or student with cross-entropy.") { model };
        common.AddTo(command);
        command.SetAction(r =>
        {
            var console = ConsoleOf(r, factory);
            return Guard("train", console, () =>
            {
                var kind = Checkpoint.ParseKind(r.GetValue(model))!.Value;
                var s = common.Read(r, kind == ModelKind.Teacher ? DefaultTeacherEpochs : DefaultStudentEpochs);
                Trainer.Prepare(s);
                var (train, test) = Trainer.LoadData(s);
                using var result = new Disposer(Trainer.Train(kind, s, train, test, console));
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{Checkpoint.KindName(kind)}: test accuracy {result.Value.TestAccuracy*100:F2}% after {s.Epochs} epochs ({result.Value.Seconds:F1} s){(s.Out is null ? "" : $"; saved {s.Out}")}"));
                return 0;
            });
        });
        return command;
    }

    private static Command Distill(Func<TextWriter, TextWriter, CliConsole> factory)
    {
        var common = new Common();
        var teacherPath = new Option<string?>("--teacher") { Description = "Teacher checkpoint (from engine train --model teacher); for --method ban, generation 0 (a student checkpoint; without it generation 0 is trained first)." };
        var method = new Option<string>("--method") { Description = $"Distillation method: {Engine.Distillation.Methods.MethodRegistry.Names}.", DefaultValueFactory = _ => "kd" };
        var temperature = new Option<double?>("--temperature") { Description = "Softmax temperature T (kd: 4, ban: 1, defensive: 20)." };
        var alpha = new Option<double?>("--alpha") { Description = "Weight of the distillation term against the labels (kd: 0.9, ban: 1), or PS-KD's alpha_T (0.8)." };
        var featureWeight = new Option<double?>("--feature-weight") { Description = "Weight of the feature term (fitnets: 100, at: 1000)." };
        var peers = new Option<int?>("--peers") { Description = "Peers of dml (2)." };
        var generations = new Option<int>("--generations") { Description = "Born-again generations after generation 0 (ban).", DefaultValueFactory = _ => 1 };
        var teachers = new Option<string?>("--teachers") { Description = "Comma-separated teacher checkpoints for --method multi-teacher (at least 2, e.g. a.safetensors,b.safetensors; instead of --teacher)." };
        var command = new Command("distill", "Train the student with a distillation method (default kd: (1-a)*CE + a*T^2*KL(teacher || student)).")
            { teacherPath, teachers, method, temperature, alpha, featureWeight, peers, generations };
        common.AddTo(command);
        command.SetAction(r =>
        {
            var console = ConsoleOf(r, factory);
            return Guard("distill", console, () =>
            {
                string m = r.GetValue(method)!;
                if (Engine.Distillation.Methods.MethodRegistry.Find(m) is null)
                    throw new CliException($"--method {m}: unknown distillation method; available: {Engine.Distillation.Methods.MethodRegistry.Names}.");
                var options = new Engine.Distillation.Methods.MethodOptions
                {
                    Temperature = r.GetValue(temperature), Alpha = r.GetValue(alpha), FeatureWeight = r.GetValue(featureWeight), Peers = r.GetValue(peers),
                };
                if (options.Temperature is double t && (!(t > 0) || double.IsInfinity(t))) throw new CliException($"--temperature {t}: expected a positive number.");
                if (options.Alpha is double a && !(a >= 0 && a <= 1)) throw new CliException($"--alpha {a}: expected a number in [0, 1].");
                if (options.Peers is int p && p < 2) throw new CliException($"--peers {p}: expected at least 2.");
                var s = common.Read(r, DefaultStudentEpochs);
                var teacherList = MethodRun.ParseTeachers(r.GetValue(teachers), m, r.GetValue(teacherPath));
                // On an accelerator, kd keeps Trainer's device path (the one the main job and docs/RESULTS use); every other
                // method runs through MethodTrainer with MethodTrainSettings.Device: model, teachers, extra modules and
                // batches on the device, and an op without a kernel there fails naming the method, the device and the op.
                if (m == "kd" && Trainer.ParseDevice(s.Device).Type != Engine.Runtime.DeviceType.Cpu)
                    return DistillKdOnDevice(console, s, r.GetValue(teacherPath), new DistillSettings(options.Temperature ?? 4.0, options.Alpha ?? 0.9));
                return MethodRun.Distill(console, s, m, r.GetValue(teacherPath), options, r.GetValue(generations), teacherList);
            });
        });
        return command;
    }

    /// <summary><c>distill --method kd --device D</c> for an accelerator: Trainer's KD path, every op of the step on the device.</summary>
    private static int DistillKdOnDevice(CliConsole console, TrainSettings s, string? path, DistillSettings d)
    {
        if (path is null) throw new CliException("--method kd needs --teacher CKPT (a checkpoint from engine train --model teacher).");
        Trainer.Prepare(s);
        var (teacher, kind, _) = Checkpoint.Load(path);
        using (teacher)
        {
            if (kind != ModelKind.Teacher) throw new CliException($"--teacher {path} holds a {Checkpoint.KindName(kind)}; expected a teacher checkpoint.");
            var (train, test) = Trainer.LoadData(s);
            var result = Trainer.Train(ModelKind.Student, s, train, test, console, teacher, d, new Dictionary<string, string> { ["teacher"] = path });
            using (result.Model)
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"kd student: test accuracy {result.TestAccuracy * 100:F2}% after {s.Epochs} epochs ({result.Seconds:F1} s){(s.Out is null ? "" : $"; saved {s.Out}")}"));
        }
        return 0;
    }

    private static Command Eval(Func<TextWriter, TextWriter, CliConsole> factory)
    {
        var checkpoint = new Argument<string>("CKPT") { Description = "A checkpoint written by train or distill (or a safetensors state dict of the same models)." };
        var model = new Option<string?>("--model") { Description = "teacher or student, for checkpoints without metadata (default: inferred)." };
        model.AcceptOnlyFromAmong("teacher", "student");
        var common = new Common();
        var command = new Command("eval", "Evaluate a checkpoint on the Fashion-MNIST test set.") { checkpoint, model, common.Threads, common.Device, common.Data, common.TestLimit };
        command.SetAction(r =>
        {
            var console = ConsoleOf(r, factory);
            return Guard("eval", console, () =>
            {
                var s = new TrainSettings { Threads = r.GetValue(common.Threads), Device = r.GetValue(common.Device) ?? "cpu", DataDirectory = r.GetValue(common.Data), TestLimit = r.GetValue(common.TestLimit) };
                Trainer.Prepare(s);
                string path = r.GetValue(checkpoint)!;
                var (net, kind, meta) = Checkpoint.Load(path, Checkpoint.ParseKind(r.GetValue(model)));
                using (net)
                {
                    if (Trainer.ParseDevice(s.Device) is { Type: not Engine.Runtime.DeviceType.Cpu } device) net.To(device);
                    var test = FashionMnist.Load(FashionMnist.Split.Test, s.DataDirectory);
                    if (s.TestLimit is int n && n < test.Count) test = test.Take(n);
                    double acc = Trainer.Evaluate(net, test);
                    string stored = meta.TryGetValue("test_accuracy", out var v) && double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var a)
                        ? string.Create(CultureInfo.InvariantCulture, $" (stored at training: {a*100:F2}%)") : "";
                    console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{path}: {Checkpoint.KindName(kind)}, test accuracy {acc*100:F2}% on {test.Count} images{stored}"));
                }
                return 0;
            });
        });
        return command;
    }

    private static Command MainJob(Func<TextWriter, TextWriter, CliConsole> factory)
    {
        var common = new Common();
        var teacherEpochs = new Option<int?>("--teacher-epochs") { Description = $"Teacher epochs (default {DefaultTeacherEpochs})." };
        var seeds = new Option<int>("--seeds") { Description = "Students are trained (from scratch and by KD) once per seed 0..N-1; the table shows mean ± std.", DefaultValueFactory = _ => 3 };
        var teacherPath = new Option<string?>("--teacher") { Description = "Use this teacher checkpoint instead of training one." };
        var temperature = new Option<double>("--temperature") { Description = "KD temperature.", DefaultValueFactory = _ => 4.0 };
        var alpha = new Option<double>("--alpha") { Description = "KD weight.", DefaultValueFactory = _ => 0.9 };
        var outDir = new Option<string>("--out-dir") { Description = "Directory for checkpoints and metrics.", DefaultValueFactory = _ => "runs/main-job" };
        var command = new Command("main-job", "Train the teacher, train the student from scratch, distill the student with KD (same budget), over several seeds; print one table.")
            { teacherEpochs, seeds, teacherPath, temperature, alpha, outDir };
        foreach (var o in new Option[] { common.Epochs, common.BatchSize, common.Lr, common.Warmup, common.WeightDecay, common.Threads, common.Device, common.Data, common.Limit, common.TestLimit, common.Flip })
            command.Options.Add(o);
        command.SetAction(r =>
        {
            var console = ConsoleOf(r, factory);
            return Guard("main-job", console, () =>
            {
                var baseSettings = common.Read(r, DefaultStudentEpochs);
                int nSeeds = r.GetValue(seeds);
                if (nSeeds < 1) throw new CliException($"--seeds {nSeeds}: expected at least 1.");
                var d = new DistillSettings(r.GetValue(temperature), r.GetValue(alpha));
                return MainJobRunner.Run(console, baseSettings, r.GetValue(teacherEpochs) ?? DefaultTeacherEpochs, nSeeds, r.GetValue(teacherPath), d, r.GetValue(outDir)!);
            });
        });
        return command;
    }

    /// <summary>Disposes a training result's model.</summary>
    private readonly struct Disposer(TrainResult value) : IDisposable
    {
        public TrainResult Value { get; } = value;

        public void Dispose() => Value.Model.Dispose();
    }
}

/// <summary>The main job: teacher, student from scratch, KD student, over seeds, one table.</summary>
public static class MainJobRunner
{
    /// <summary>
    /// Trains (or loads) one teacher with seed 0, then for each seed trains a student from scratch
    /// and a student by KD with the same settings and budget; prints the per-epoch lines and one
    /// table (model, test accuracy mean ± std over seeds, time). Returns the exit code.
    /// </summary>
    public static int Run(CliConsole console, TrainSettings baseSettings, int teacherEpochs, int seeds, string? teacherPath, DistillSettings distill, string outDir)
    {
        Trainer.Prepare(baseSettings);
        if (teacherEpochs < 1) throw new CliException($"--teacher-epochs {teacherEpochs}: expected at least 1.");
        Directory.CreateDirectory(outDir);
        string metrics = Path.Combine(outDir, "metrics.jsonl");
        var (train, test) = Trainer.LoadData(baseSettings);
        console.Out.WriteLine($"main-job: {train.Count} training images, {test.Count} test images, {(teacherPath is null ? $"teacher {teacherEpochs} epochs" : $"teacher loaded from {teacherPath}")}, students {baseSettings.Epochs} epochs × {seeds} seed(s), " +
                              $"batch {baseSettings.BatchSize}, lr {baseSettings.LearningRate.ToString(CultureInfo.InvariantCulture)}, KD T={distill.Temperature.ToString(CultureInfo.InvariantCulture)} α={distill.Alpha.ToString(CultureInfo.InvariantCulture)}");

        FashionMnistNet teacher;
        double teacherAcc, teacherSeconds;
        string teacherNote;
        if (teacherPath is not null)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var (model, kind, _) = Checkpoint.Load(teacherPath);
            if (kind != ModelKind.Teacher) { model.Dispose(); throw new CliException($"--teacher {teacherPath} holds a {Checkpoint.KindName(kind)}; expected a teacher checkpoint."); }
            teacher = model;
            teacherAcc = Trainer.Evaluate(teacher, test);
            teacherSeconds = clock.Elapsed.TotalSeconds;
            teacherNote = $"loaded from {teacherPath}";
        }
        else
        {
            var ts = baseSettings with { Epochs = teacherEpochs, Seed = 0, Out = Path.Combine(outDir, "teacher.safetensors"), Metrics = metrics };
            var result = Trainer.Train(ModelKind.Teacher, ts, train, test, console, label: "teacher");
            teacher = result.Model;
            teacherAcc = result.TestAccuracy;
            teacherSeconds = result.Seconds;
            teacherNote = $"{teacherEpochs} epochs, seed 0";
        }

        double cacheSeconds;
        var scratch = new List<(double Acc, double Seconds)>();
        var kd = new List<(double Acc, double Seconds)>();
        using (teacher)
        {
            // The students see unaugmented images, so the teacher's logits are the same in every epoch and
            // for every seed: computed once here (its time is shown in the KD row).
            var cacheClock = System.Diagnostics.Stopwatch.StartNew();
            var cache = baseSettings.Flip ? null : TeacherLogits.Compute(teacher, train, console);
            cacheSeconds = cacheClock.Elapsed.TotalSeconds;
            for (int seed = 0; seed < seeds; seed++)
            {
                var ss = baseSettings with { Seed = (ulong)seed, Metrics = metrics, Augment = false };
                var a = Trainer.Train(ModelKind.Student, ss with { Out = Path.Combine(outDir, $"student-seed{seed}.safetensors") }, train, test, console, label: $"student (seed {seed})");
                a.Model.Dispose();
                scratch.Add((a.TestAccuracy, a.Seconds));
                var b = Trainer.Train(ModelKind.Student, ss with { Out = Path.Combine(outDir, $"kd-student-seed{seed}.safetensors") }, train, test, console, teacher, distill,
                    new Dictionary<string, string> { ["teacher"] = teacherPath ?? Path.Combine(outDir, "teacher.safetensors") }, label: $"kd student (seed {seed})", teacherCache: cache);
                b.Model.Dispose();
                kd.Add((b.TestAccuracy, b.Seconds));
            }
        }

        var table = new Table().Title($"Fashion-MNIST, {test.Count} test images").AddColumn("model").AddColumn(new TableColumn("params").RightAligned())
            .AddColumn(new TableColumn("test accuracy").RightAligned()).AddColumn(new TableColumn("time").RightAligned());
        // A loaded teacher was not trained here: its time is the load + test pass, labelled as such.
        table.AddRow("teacher", "1.7M", Pct(teacherAcc), teacherPath is null ? Secs(teacherSeconds) : "loaded; eval " + Secs(teacherSeconds));
        table.AddRow("student from scratch", "9k", MeanStd(scratch.Select(x => x.Acc).ToList()), Secs(scratch.Average(x => x.Seconds)) + " /seed");
        table.AddRow(Markup.Escape($"student + KD (T={distill.Temperature.ToString(CultureInfo.InvariantCulture)}, α={distill.Alpha.ToString(CultureInfo.InvariantCulture)})"), "9k",
            MeanStd(kd.Select(x => x.Acc).ToList()), Secs(kd.Average(x => x.Seconds)) + " /seed");
        table.Caption(Markup.Escape($"teacher: {teacherNote}; students: {baseSettings.Epochs} epochs × {train.Count} images, mean ± std over {seeds} seed(s); " +
            string.Create(CultureInfo.InvariantCulture, $"KD time excludes the teacher's logits, computed once in {cacheSeconds:F1} s")));
        console.Ansi.Write(table);
        double gain = kd.Average(x => x.Acc) - scratch.Average(x => x.Acc);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"KD vs scratch: {gain * 100:+0.00;-0.00} points (mean over {seeds} seed(s)); checkpoints and metrics in {outDir}"));
        return 0;
    }

    private static string Pct(double a) => string.Create(CultureInfo.InvariantCulture, $"{a * 100:F2}%");

    private static string Secs(double s) => string.Create(CultureInfo.InvariantCulture, $"{s:F1} s");

    private static string MeanStd(IReadOnlyList<double> xs)
    {
        double mean = xs.Average();
        double std = xs.Count < 2 ? 0 : Math.Sqrt(xs.Sum(x => (x - mean) * (x - mean)) / (xs.Count - 1));
        return string.Create(CultureInfo.InvariantCulture, $"{mean * 100:F2} ± {std * 100:F2}%");
    }
}
