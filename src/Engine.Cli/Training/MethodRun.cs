using System.Globalization;
using Engine.Distillation.Methods;
using Engine.Tensors.NN.Models;

namespace Engine.Cli.Training;

/// <summary>
/// <c>engine distill --method NAME</c>: builds the method from <see cref="MethodRegistry"/>, trains the
/// Fashion-MNIST student with <see cref="MethodTrainer"/> and writes the checkpoint (metadata: method,
/// its hyperparameters, teacher path, settings) and the per-epoch metrics.
/// </summary>
public static class MethodRun
{
    /// <summary>
    /// Runs method <paramref name="methodName"/> with settings <paramref name="s"/>; <paramref name="teacherPath"/>
    /// is a teacher checkpoint (or, for ban, generation 0: a student checkpoint; without one, generation 0 is
    /// trained from the labels first). Returns the exit code.
    /// </summary>
    /// <param name="console">Where progress and results go.</param>
    /// <param name="s">The common training settings (device included).</param>
    /// <param name="methodName">The registry name.</param>
    /// <param name="teacherPath">The --teacher checkpoint, or null.</param>
    /// <param name="options">The method's hyperparameters.</param>
    /// <param name="generations">Born-again generations (ban).</param>
    /// <param name="teacherPaths">The --teachers checkpoints (multi-teacher; see <see cref="ParseTeachers"/>), used instead of <paramref name="teacherPath"/>.</param>
    public static int Distill(CliConsole console, TrainSettings s, string methodName, string? teacherPath, MethodOptions options, int generations,
        IReadOnlyList<string>? teacherPaths = null)
    {
        ArgumentNullException.ThrowIfNull(console);
        ArgumentNullException.ThrowIfNull(s);
        var info = MethodRegistry.Find(methodName) ?? throw new CliException($"--method {methodName}: unknown distillation method; available: {MethodRegistry.Names}.");
        if (generations < 1) throw new CliException($"--generations {generations}: expected at least 1.");
        Trainer.Prepare(s);
        if (teacherPaths is { Count: > 0 })
        {
            var loaded = LoadTeachers(teacherPaths);
            try
            {
                return Run(console, s, info, loaded[0], string.Join(",", teacherPaths), options, generations, loaded.Skip(1).ToList());
            }
            finally
            {
                foreach (var t in loaded) t.Dispose();
            }
        }
        FashionMnistNet? teacher = null;
        if (teacherPath is not null)
        {
            var (model, kind, _) = Checkpoint.Load(teacherPath);
            teacher = model;
            var expected = info.Teacher == TeacherRequirement.SameArchitecture ? ModelKind.Student : ModelKind.Teacher;
            if (info.Teacher == TeacherRequirement.None)
            {
                model.Dispose();
                throw new CliException($"--method {info.Name} learns without a teacher; drop --teacher.");
            }
            if (kind != expected)
            {
                model.Dispose();
                throw new CliException(info.Teacher == TeacherRequirement.SameArchitecture
                    ? $"--teacher {teacherPath} holds a {Checkpoint.KindName(kind)}; --method ban needs generation 0 of the student's architecture (a student checkpoint)."
                    : $"--teacher {teacherPath} holds a {Checkpoint.KindName(kind)}; expected a teacher checkpoint.");
            }
        }
        else if (info.Teacher == TeacherRequirement.Required)
            throw new CliException($"--method {info.Name} needs --teacher CKPT (a checkpoint from engine train --model teacher).");

        using (teacher)
            return Run(console, s, info, teacher, teacherPath, options, generations, []);
    }

    /// <summary>
    /// Splits <c>--teachers a.safetensors,b.safetensors</c> (commas; blanks around names ignored). Null or empty: none.
    /// </summary>
    /// <exception cref="CliException">--teachers with a method other than multi-teacher, together with --teacher, an empty
    /// entry, fewer than two checkpoints, or the same file twice.</exception>
    public static IReadOnlyList<string> ParseTeachers(string? value, string methodName, string? teacherPath)
    {
        if (value is null) return [];
        if (!string.Equals(methodName, "multi-teacher", StringComparison.OrdinalIgnoreCase))
            throw new CliException($"--teachers is for --method multi-teacher; --method {methodName} learns from one teacher (--teacher CKPT).");
        if (teacherPath is not null)
            throw new CliException("--teacher and --teachers: give the teachers once, all of them in --teachers (comma-separated).");
        var paths = value.Split(',').Select(p => p.Trim()).ToList();
        if (paths.Any(p => p.Length == 0))
            throw new CliException($"--teachers '{value}': an empty entry; expected comma-separated checkpoint paths, e.g. a.safetensors,b.safetensors.");
        if (paths.Count < 2)
            throw new CliException($"--teachers '{value}': multi-teacher needs at least 2 teacher checkpoints; got {paths.Count}.");
        var twice = paths.GroupBy(p => Path.GetFullPath(p)).FirstOrDefault(g => g.Count() > 1);
        if (twice is not null)
            throw new CliException($"--teachers: {twice.First()} is given {twice.Count()} times; an ensemble of copies of one teacher is that teacher.");
        return paths;
    }

    /// <summary>
    /// Loads every <c>--teachers</c> checkpoint as a teacher; each must exist, be a readable safetensors checkpoint of the
    /// teacher model (metadata <c>model = teacher</c>, or the teacher's tensor names), and classify into as many classes
    /// as the others (the rows of the classifier's weight, checked before loading so a mismatch names both counts).
    /// </summary>
    /// <exception cref="CliException">The first failing file, named with the reason.</exception>
    /// <param name="paths">The checkpoint files.</param>
    /// <param name="option">The option that named them, for messages.</param>
    public static IReadOnlyList<FashionMnistNet> LoadTeachers(IReadOnlyList<string> paths, string option = "--teachers")
    {
        ArgumentNullException.ThrowIfNull(paths);
        var loaded = new List<FashionMnistNet>();
        int? classes = null;
        string? first = null;
        try
        {
            foreach (var path in paths)
            {
                if (!File.Exists(path)) throw new CliException($"{option}: checkpoint not found: {path}");
                int c = ClassCount(path);
                if (classes is int want && c != want)
                    throw new CliException($"{option}: {path} classifies into {c} classes but {first} into {want}; the teachers of an ensemble must share the classes.");
                classes ??= c;
                first ??= path;
                var (model, kind, _) = Checkpoint.Load(path);
                if (kind != ModelKind.Teacher)
                {
                    model.Dispose();
                    throw new CliException($"{option}: {path} holds a {Checkpoint.KindName(kind)}; expected a teacher checkpoint (engine train --model teacher).");
                }
                loaded.Add(model);
            }
            return loaded;
        }
        catch
        {
            foreach (var m in loaded) m.Dispose();
            throw;
        }
    }

    /// <summary>The rows of the checkpoint's classifier weight (the teacher model's last matrix parameter).</summary>
    private static int ClassCount(string path)
    {
        Dictionary<string, Engine.Tensors.Tensor> tensors;
        try
        {
            tensors = Engine.Tensors.Serialization.SafeTensors.Load(path, out _);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException or UnauthorizedAccessException)
        {
            throw new CliException($"--teachers: cannot read checkpoint {path}: {e.Message}", e);
        }
        try
        {
            string key;
            using (var reference = FashionMnistModels.Teacher(new Engine.Tensors.Generator(0)))
            {
                key = reference.StateDict().Last(kv => kv.Value.Rank == 2).Key; // the module's own tensors: not disposed here
            }
            if (!tensors.TryGetValue(key, out var w))
                throw new CliException($"--teachers: {path} has no tensor '{key}' (the teacher's classifier weight); is it a teacher checkpoint from engine train --model teacher?");
            return (int)w.Size(0);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    private static int Run(CliConsole console, TrainSettings s, MethodInfo info, FashionMnistNet? teacher, string? teacherPath, MethodOptions options,
        int generations, IReadOnlyList<FashionMnistNet> additionalTeachers)
    {
        {
            var (train, test) = Trainer.LoadData(s);
            var ts = new MethodTrainSettings
            {
                Epochs = s.Epochs, BatchSize = s.BatchSize, LearningRate = s.LearningRate, WarmupEpochs = s.WarmupEpochs, Momentum = s.Momentum,
                WeightDecay = s.WeightDecay, Seed = s.Seed, Augment = s.AugmentFor(ModelKind.Student), Flip = s.Flip, Normalization = Trainer.Normalization,
                EvalBatchSize = Trainer.EvalBatchSize, Device = Trainer.ParseDevice(s.Device),
            };
            var observer = new CliTrainingObserver(console, s.Metrics, info.Name, s.Seed);
            try
            {
                if (info.Teacher == TeacherRequirement.SameArchitecture)
                    return BornAgainGenerations(console, s, ts, teacher, teacherPath, options, generations, observer, train, test);

                using var student = Trainer.Build(ModelKind.Student, s.Seed);
                IDistillationMethod method;
                try
                {
                    method = MethodRegistry.Create(info.Name, new MethodContext(student, teacher, seed => Trainer.Build(ModelKind.Student, seed),
                        [1, 28, 28], s.Seed, options) { AdditionalTeachers = additionalTeachers });
                }
                catch (ArgumentException e)
                {
                    throw new CliException($"--method {info.Name}: {e.Message}", e);
                }
                using (method)
                {
                    var result = MethodTrainer.Train(method, ts, train, test, observer, $"{info.Name} student");
                    Save(s, student, info.Name, method, result, train.Count, test.Count, teacherPath);
                    console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{info.Name} student: test accuracy {result.TestAccuracy * 100:F2}% after {s.Epochs} epochs ({result.Seconds:F1} s){(s.Out is null ? "" : $"; saved {s.Out}")}"));
                }
                return 0;
            }
            catch (TrainingDivergedException e)
            {
                throw new CliException(e.Message, e);
            }
            catch (NotSupportedException e) when (ts.Device.Type != Engine.Runtime.DeviceType.Cpu)
            {
                // An op of the method without a kernel on the device (the message names the method, the device and the op).
                throw new CliException($"--device {s.Device}: {e.Message}", e);
            }
        }
    }

    private static int BornAgainGenerations(CliConsole console, TrainSettings s, MethodTrainSettings ts, FashionMnistNet? generation0, string? teacherPath,
        MethodOptions options, int generations, CliTrainingObserver observer, Engine.Data.ImageDataset train, Engine.Data.ImageDataset test)
    {
        var gens = BornAgain.Train(k => Trainer.Build(ModelKind.Student, s.Seed + 1000UL * (ulong)k), generation0, generations, ts, train, test, observer,
            options.Temperature ?? 1, options.Alpha ?? 1);
        try
        {
            foreach (var g in gens)
            {
                double acc = g.Result?.TestAccuracy ?? MethodTrainer.Evaluate(g.Model, test, Trainer.Normalization, Trainer.EvalBatchSize);
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ban generation {g.Generation}: test accuracy {acc * 100:F2}%{(g.Result is null ? " (given)" : $" ({g.Result.Seconds:F1} s)")}"));
            }
            var last = gens[^1];
            if (s.Out is not null)
            {
                var meta = Metadata(s, "ban", last.Result!, train.Count, test.Count, teacherPath);
                meta["generation"] = last.Generation.ToString(CultureInfo.InvariantCulture);
                meta["temperature"] = Checkpoint.Number(options.Temperature ?? 1);
                meta["alpha"] = Checkpoint.Number(options.Alpha ?? 1);
                Checkpoint.Save(s.Out, (FashionMnistNet)last.Model, ModelKind.Student, meta);
                console.Out.WriteLine($"saved generation {last.Generation} to {s.Out}");
            }
            return 0;
        }
        finally
        {
            foreach (var g in gens) if (!ReferenceEquals(g.Model, generation0)) g.Model.Dispose();
        }
    }

    private static void Save(TrainSettings s, FashionMnistNet student, string name, IDistillationMethod method, MethodRunResult result, int trainCount, int testCount, string? teacherPath)
    {
        if (s.Out is null) return;
        var meta = Metadata(s, name, result, trainCount, testCount, teacherPath);
        switch (method)
        {
            case KnowledgeDistillationMethod kd:
                meta["temperature"] = Checkpoint.Number(kd.Temperature);
                meta["alpha"] = Checkpoint.Number(kd.Alpha);
                break;
            case DefensiveDistillationMethod dd:
                meta["temperature"] = Checkpoint.Number(dd.Temperature);
                break;
            case FitNetsMethod f:
                meta["feature_weight"] = Checkpoint.Number(f.Weight);
                break;
            case AttentionTransferMethod at:
                meta["feature_weight"] = Checkpoint.Number(at.Weight);
                break;
            case ProgressiveSelfKDMethod ps:
                meta["alpha"] = Checkpoint.Number(ps.AlphaT);
                break;
            case DeepMutualLearningMethod dml:
                meta["peers"] = dml.Peers.Count.ToString(CultureInfo.InvariantCulture);
                break;
        }
        Checkpoint.Save(s.Out, student, ModelKind.Student, meta);
    }

    private static Dictionary<string, string> Metadata(TrainSettings s, string name, MethodRunResult result, int trainCount, int testCount, string? teacherPath)
    {
        var meta = new Dictionary<string, string>
        {
            ["epoch"] = s.Epochs.ToString(CultureInfo.InvariantCulture),
            ["test_accuracy"] = Checkpoint.Number(result.TestAccuracy),
            ["test_images"] = testCount.ToString(CultureInfo.InvariantCulture),
            ["train_images"] = trainCount.ToString(CultureInfo.InvariantCulture),
            ["seed"] = s.Seed.ToString(CultureInfo.InvariantCulture),
            ["method"] = name,
            ["batch_size"] = s.BatchSize.ToString(CultureInfo.InvariantCulture),
            ["lr"] = Checkpoint.Number(s.LearningRate),
            ["augment"] = s.AugmentFor(ModelKind.Student) ? (s.Flip ? "crop+flip" : "crop") : (s.Flip ? "flip" : "none"),
        };
        if (teacherPath is not null) meta["teacher"] = teacherPath;
        return meta;
    }
}
